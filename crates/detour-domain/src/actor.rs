//! Who did something, as audit records and events carry it: identifiers only, never a name or an
//! address, so an actor is always safe to log.

use detour_proto::common::v1 as pb;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    Service,
}

impl ActorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(ActorKind::User),
            "service" => Some(ActorKind::Service),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    /// The user's subject id, or the service's name.
    pub id: String,
    /// A user's roles when they acted; empty for services.
    pub roles: Vec<String>,
    /// For a service: the user it acted for.
    pub on_behalf_of: Option<String>,
}

impl Actor {
    pub fn user(id: impl Into<String>, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            kind: ActorKind::User,
            id: id.into(),
            roles: roles.into_iter().map(Into::into).collect(),
            on_behalf_of: None,
        }
    }

    pub fn service(name: impl Into<String>, on_behalf_of: Option<String>) -> Self {
        Self { kind: ActorKind::Service, id: name.into(), roles: Vec::new(), on_behalf_of }
    }

    /// Service `name` reacting to something `upstream` did: the end user travels along, so a
    /// chain of events started by an agent stays attributed to that agent.
    pub fn reacting_to(name: impl Into<String>, upstream: Option<&Actor>) -> Self {
        Self::service(name, upstream.and_then(Actor::end_user).map(str::to_owned))
    }

    /// The person behind the action, if any.
    pub fn end_user(&self) -> Option<&str> {
        match self.kind {
            ActorKind::User => Some(&self.id),
            ActorKind::Service => self.on_behalf_of.as_deref(),
        }
    }

    pub fn to_proto(&self) -> pb::Actor {
        pb::Actor {
            kind: match self.kind {
                ActorKind::User => pb::ActorKind::User,
                ActorKind::Service => pb::ActorKind::Service,
            }
            .into(),
            id: self.id.clone(),
            roles: self.roles.clone(),
            on_behalf_of: self.on_behalf_of.clone().unwrap_or_default(),
        }
    }

    /// The actor an event names, when it names a valid one.
    pub fn from_proto(p: &pb::Actor) -> Option<Self> {
        let kind = match pb::ActorKind::try_from(p.kind).ok()? {
            pb::ActorKind::User => ActorKind::User,
            pb::ActorKind::Service => ActorKind::Service,
            pb::ActorKind::Unspecified => return None,
        };
        if p.id.is_empty() {
            return None;
        }
        Some(Self {
            kind,
            id: p.id.clone(),
            roles: p.roles.clone(),
            on_behalf_of: Some(p.on_behalf_of.clone()).filter(|s| !s.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_user_follows_a_chain_of_services() {
        let agent = Actor::user("u-7", ["agent"]);
        let triage = Actor::reacting_to("triage", Some(&agent));
        let supplier = Actor::reacting_to("supplier", Some(&triage));
        assert_eq!(supplier.end_user(), Some("u-7"));
        assert_eq!(supplier.id, "supplier");
        assert_eq!(Actor::reacting_to("x", None).end_user(), None);
    }

    #[test]
    fn proto_round_trip() {
        for actor in [Actor::user("u-1", ["agent", "admin"]), Actor::service("gateway", Some("u-2".into()))] {
            assert_eq!(Actor::from_proto(&actor.to_proto()), Some(actor));
        }
        assert_eq!(Actor::from_proto(&pb::Actor::default()), None);
        assert_eq!(ActorKind::parse(ActorKind::Service.as_str()), Some(ActorKind::Service));
    }
}
