//! Who is calling: a person with roles, or a service (perhaps acting for an end user).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a person may do in Detour. Tokens carry these as snake_case names (`crisis_manager`);
/// names Detour does not know are ignored in tokens and refused in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Desk agent: opens, reads and resolves cases, records supplier answers.
    Agent,
    /// Team lead: everything an agent does, plus accepting offers.
    Supervisor,
    /// Reads and accepts compensation offers.
    Finance,
    /// Everything on cases during disruptions.
    CrisisManager,
    /// Everything.
    Admin,
    /// A supplier's staff, through the partner gateway: supplier requests only.
    Partner,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 6] =
        [Role::Agent, Role::Supervisor, Role::Finance, Role::CrisisManager, Role::Admin, Role::Partner];

    /// The name tokens and the policy use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Finance => "finance",
            Role::CrisisManager => "crisis_manager",
            Role::Admin => "admin",
            Role::Partner => "partner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// The party behind a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person, by the issuer's subject id, with the Detour roles the token grants.
    User { subject: String, roles: BTreeSet<Role> },
    /// A service (token claim `svc`), possibly acting for an end user (that user's subject id).
    Service { name: String, on_behalf_of: Option<String> },
}

/// The authenticated caller of one request, as the [`AuthLayer`](crate::AuthLayer) puts it
/// into the request's extensions.
///
/// Holds identifiers only (subject ids, a service name, roles, the issuer): no names, e-mail
/// addresses or other claims, so `Debug` output is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub caller: Caller,
    /// The `iss` of the token that authenticated the caller.
    pub issuer: String,
}

impl Principal {
    pub fn user(
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = Role>,
        issuer: impl Into<String>,
    ) -> Self {
        Self {
            caller: Caller::User { subject: subject.into(), roles: roles.into_iter().collect() },
            issuer: issuer.into(),
        }
    }

    pub fn service(name: impl Into<String>, on_behalf_of: Option<String>, issuer: impl Into<String>) -> Self {
        Self { caller: Caller::Service { name: name.into(), on_behalf_of }, issuer: issuer.into() }
    }

    /// The principal the auth layer attached to a request a handler received.
    pub fn from_request<T>(request: &tonic::Request<T>) -> Option<&Principal> {
        request.extensions().get::<Principal>()
    }

    /// As [`Principal::from_request`], from raw `http` extensions (tower layers, interceptors).
    pub fn from_extensions(extensions: &http::Extensions) -> Option<&Principal> {
        extensions.get::<Principal>()
    }

    /// The user's subject id, or the service's name.
    pub fn id(&self) -> &str {
        match &self.caller {
            Caller::User { subject, .. } => subject,
            Caller::Service { name, .. } => name,
        }
    }

    /// The end user a call is made for: the user themself, or the user a service acts for.
    pub fn end_user(&self) -> Option<&str> {
        match &self.caller {
            Caller::User { subject, .. } => Some(subject),
            Caller::Service { on_behalf_of, .. } => on_behalf_of.as_deref(),
        }
    }

    pub fn is_service(&self) -> bool {
        matches!(self.caller, Caller::Service { .. })
    }

    /// Whether a user caller holds `role`; services hold no roles.
    pub fn has_role(&self, role: Role) -> bool {
        match &self.caller {
            Caller::User { roles, .. } => roles.contains(&role),
            Caller::Service { .. } => false,
        }
    }

    /// A user caller's roles; empty for services.
    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        let roles = match &self.caller {
            Caller::User { roles, .. } => Some(roles.iter().copied()),
            Caller::Service { .. } => None,
        };
        roles.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
        assert_eq!("CrisisManager".parse::<Role>(), Err(UnknownRole("CrisisManager".into())));
    }

    #[test]
    fn principal_helpers() {
        let user = Principal::user("u-1", [Role::Agent], "iss");
        assert_eq!(user.id(), "u-1");
        assert_eq!(user.end_user(), Some("u-1"));
        assert!(user.has_role(Role::Agent) && !user.has_role(Role::Admin));
        let svc = Principal::service("gateway", Some("u-2".into()), "iss");
        assert!(svc.is_service());
        assert_eq!(svc.id(), "gateway");
        assert_eq!(svc.end_user(), Some("u-2"));
        assert_eq!(svc.roles().count(), 0);
    }
}
