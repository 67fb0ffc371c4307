//! Generated types and gRPC stubs for every Detour contract.
//!
//! Handlers convert these into domain types at the boundary; nothing below a handler should
//! depend on this crate.

#![allow(clippy::all, missing_docs, unreachable_pub)]

/// Encoded `FileDescriptorSet` of every file under `proto/`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/detour_descriptor.bin"));

pub mod common {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/detour.common.v1.rs"));
    }
}

pub mod events {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/detour.events.v1.rs"));
    }
}

pub mod intake {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/detour.intake.v1.rs"));
    }
}

pub mod triage {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/detour.triage.v1.rs"));
    }
}

pub mod supplier {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/detour.supplier.v1.rs"));
    }
}

pub mod compensation {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/detour.compensation.v1.rs"));
    }
}

pub mod feedback {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/detour.feedback.v1.rs"));
    }
}

/// Fully qualified gRPC service names, as health checking and reflection report them.
pub mod service_names {
    pub const INTAKE: &str = "detour.intake.v1.IntakeService";
    pub const TRIAGE: &str = "detour.triage.v1.TriageService";
    pub const SUPPLIER: &str = "detour.supplier.v1.SupplierService";
    pub const COMPENSATION: &str = "detour.compensation.v1.CompensationService";
    pub const FEEDBACK: &str = "detour.feedback.v1.FeedbackService";
}
