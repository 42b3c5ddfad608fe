//! Generated gRPC code for Stride's service contracts.
//!
//! The `.proto` files live in the repository's `proto/` folder, one folder per service and
//! version. They are compiled here, once, so that a service and its clients always share the
//! same generated types.

/// Contracts of the identity service.
pub mod identity {
    /// Version 1 of the identity contracts.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("stride.identity.v1");
    }
}

/// Contracts of the training service.
pub mod training {
    /// Version 1 of the training contracts.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("stride.training.v1");
    }
}

/// Contracts of the telemetry service.
pub mod telemetry {
    /// Version 1 of the telemetry contracts.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("stride.telemetry.v1");
    }
}

/// Contracts of the inventory service.
pub mod inventory {
    /// Version 1 of the inventory contracts.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("stride.inventory.v1");
    }
}
