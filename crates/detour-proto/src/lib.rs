//! Generated types and gRPC stubs for every Detour contract.
//!
//! Handlers convert these into domain types at the boundary; nothing below a handler should
//! depend on this crate.

#![allow(clippy::all, missing_docs, unreachable_pub)]

/// Encoded `FileDescriptorSet` of every file under `proto/`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/detour_descriptor.bin"));

/// Every RPC in an encoded `FileDescriptorSet`, as `package.Service/Method` (the gRPC path
/// without its leading slash). An undecodable set yields nothing.
pub fn rpc_names(encoded_file_descriptor_set: &[u8]) -> Vec<String> {
    use prost::Message as _;
    let Ok(set) = prost_types::FileDescriptorSet::decode(encoded_file_descriptor_set) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                names.push(format!("{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    names
}

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

pub mod audit {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/detour.audit.v1.rs"));
    }
}

/// Fully qualified gRPC service names, as health checking and reflection report them.
pub mod service_names {
    pub const INTAKE: &str = "detour.intake.v1.IntakeService";
    pub const TRIAGE: &str = "detour.triage.v1.TriageService";
    pub const SUPPLIER: &str = "detour.supplier.v1.SupplierService";
    pub const COMPENSATION: &str = "detour.compensation.v1.CompensationService";
    pub const FEEDBACK: &str = "detour.feedback.v1.FeedbackService";
    /// Served by every host, for the services it runs.
    pub const AUDIT: &str = "detour.audit.v1.AuditService";
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rpc_of_the_contracts_is_named() {
        let names = super::rpc_names(super::FILE_DESCRIPTOR_SET);
        assert!(names.iter().any(|n| n == "detour.intake.v1.IntakeService/OpenCase"), "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("detour.") && n.contains('/')));
        assert!(super::rpc_names(b"\xff\xff").is_empty());
    }
}
