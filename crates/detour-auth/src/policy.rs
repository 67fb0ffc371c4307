//! Who may call which RPC: `proto/policy.toml`, next to the contracts it governs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::error::AuthError;
use crate::principal::{Caller, Principal, Role};

/// The policy table the suite ships with (`proto/policy.toml`).
pub const POLICY_TOML: &str = include_str!("../../../proto/policy.toml");

/// Longest RPC name repeated in a refusal.
const MAX_METHOD_IN_ERROR: usize = 128;

/// Who may call one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// User roles allowed; a user needs one of them.
    pub roles: BTreeSet<Role>,
    /// Whether service callers are allowed.
    pub services: bool,
}

impl Rule {
    pub fn allows(&self, principal: &Principal) -> bool {
        match &principal.caller {
            Caller::User { roles, .. } => !self.roles.is_disjoint(roles),
            Caller::Service { .. } => self.services,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy: {0}")]
    Toml(String),
    #[error("policy: `{rpc}` is not a full RPC name (`package.Service/Method`)")]
    BadRpcName { rpc: String },
    #[error("policy: `{rpc}`: unknown role `{role}`")]
    UnknownRole { rpc: String, role: String },
    #[error("policy: `{rpc}`: role `{role}` is listed twice")]
    DuplicateRole { rpc: String, role: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    roles: Vec<String>,
    #[serde(default)]
    services: bool,
}

/// The policy: one [`Rule`] per RPC full name. Anything not listed is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: BTreeMap<String, Rule>,
}

impl Policy {
    /// The shipped policy, [`POLICY_TOML`].
    pub fn embedded() -> Result<Self, PolicyError> {
        Self::from_toml(POLICY_TOML)
    }

    /// Parses a policy table, refusing unknown role names and malformed RPC names.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let raw: BTreeMap<String, RawRule> =
            toml::from_str(text).map_err(|e| PolicyError::Toml(e.to_string()))?;
        let mut rules = BTreeMap::new();
        for (rpc, raw) in raw {
            let well_formed = rpc.split_once('/').is_some_and(|(service, method)| {
                service.contains('.')
                    && !service.starts_with('.')
                    && !service.ends_with('.')
                    && !method.is_empty()
                    && !method.contains(['/', '.'])
            });
            if !well_formed {
                return Err(PolicyError::BadRpcName { rpc });
            }
            let mut roles = BTreeSet::new();
            for name in raw.roles {
                let role = name
                    .parse::<Role>()
                    .map_err(|_| PolicyError::UnknownRole { rpc: rpc.clone(), role: name.clone() })?;
                if !roles.insert(role) {
                    return Err(PolicyError::DuplicateRole { rpc, role: name });
                }
            }
            rules.insert(rpc, Rule { roles, services: raw.services });
        }
        Ok(Self { rules })
    }

    /// Whether `principal` may call the RPC at `path` (`/package.Service/Method`, the leading
    /// slash optional). An RPC without an entry is refused.
    pub fn check(&self, path: &str, principal: &Principal) -> Result<(), AuthError> {
        let rpc = path.strip_prefix('/').unwrap_or(path);
        match self.rules.get(rpc) {
            Some(rule) if rule.allows(principal) => Ok(()),
            Some(_) => Err(AuthError::PermissionDenied { method: rpc.to_owned() }),
            // A path the caller made up goes into the answer, so only so much of it.
            None => {
                let end = rpc.char_indices().nth(MAX_METHOD_IN_ERROR).map_or(rpc.len(), |(i, _)| i);
                Err(AuthError::PermissionDenied { method: rpc[..end].to_owned() })
            }
        }
    }

    /// The rule for one RPC full name.
    pub fn rule(&self, rpc: &str) -> Option<&Rule> {
        self.rules.get(rpc)
    }

    /// Every entry, by RPC full name.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &Rule)> {
        self.rules.iter().map(|(rpc, rule)| (rpc.as_str(), rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_parses() {
        let policy = Policy::embedded().unwrap();
        assert!(policy.rules().count() > 0);
        // Admin is listed everywhere; partners only on supplier requests.
        for (rpc, rule) in policy.rules() {
            assert!(rule.roles.contains(&Role::Admin), "{rpc}");
            assert_eq!(rule.roles.contains(&Role::Partner), rpc.starts_with("detour.supplier.v1."), "{rpc}");
        }
    }

    #[test]
    fn unknown_roles_and_bad_names_are_refused() {
        let err = Policy::from_toml("[\"a.B/C\"]\nroles = [\"agent\", \"traveler\"]\n").unwrap_err();
        assert_eq!(err, PolicyError::UnknownRole { rpc: "a.B/C".into(), role: "traveler".into() });
        let err = Policy::from_toml("[\"a.B/C\"]\nroles = [\"agent\", \"agent\"]\n").unwrap_err();
        assert!(matches!(err, PolicyError::DuplicateRole { .. }));
        for name in ["B/C", "a.B", "/a.B/C", "a.B/C/D", "a.B/"] {
            let err = Policy::from_toml(&format!("[\"{name}\"]\nroles = []\n")).unwrap_err();
            assert!(matches!(err, PolicyError::BadRpcName { .. }), "{name}: {err}");
        }
        assert!(matches!(
            Policy::from_toml("[\"a.B/C\"]\nroles = []\nservice = true\n"),
            Err(PolicyError::Toml(_))
        ));
    }

    #[test]
    fn check_is_fail_closed() {
        let policy =
            Policy::from_toml("[\"a.B/C\"]\nroles = [\"agent\"]\n[\"a.B/D\"]\nroles = []\nservices = true\n")
                .unwrap();
        let agent = Principal::user("u", [Role::Agent], "i");
        let admin = Principal::user("u", [Role::Admin], "i");
        let svc = Principal::service("s", None, "i");
        assert_eq!(policy.check("/a.B/C", &agent), Ok(()));
        assert_eq!(policy.check("a.B/C", &agent), Ok(()));
        assert!(policy.check("/a.B/C", &admin).is_err());
        assert!(policy.check("/a.B/C", &svc).is_err());
        assert_eq!(policy.check("/a.B/D", &svc), Ok(()));
        assert!(policy.check("/a.B/D", &agent).is_err());
        let err = policy.check("/a.B/E", &admin).unwrap_err();
        assert_eq!(err, AuthError::PermissionDenied { method: "a.B/E".into() });
        let long = format!("/a.B/{}", "x".repeat(10_000));
        let AuthError::PermissionDenied { method } = policy.check(&long, &admin).unwrap_err() else {
            panic!("not a permission error")
        };
        assert_eq!(method.len(), MAX_METHOD_IN_ERROR);
    }
}
