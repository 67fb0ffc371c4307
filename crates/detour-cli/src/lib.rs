//! The pieces of the `detour` command that tests drive directly.

pub mod client;
pub mod itinerary;

use detour_server::ServiceModule;

/// Every service of the suite, in the order `detour dev` starts them.
pub const MODULES: &[ServiceModule] = &[
    detour_intake::MODULE,
    detour_triage::MODULE,
    detour_supplier::MODULE,
    detour_compensation::MODULE,
    detour_feedback::MODULE,
];

pub fn module(name: &str) -> Option<ServiceModule> {
    MODULES.iter().copied().find(|m| m.name == name)
}

pub fn module_names() -> String {
    MODULES.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}
