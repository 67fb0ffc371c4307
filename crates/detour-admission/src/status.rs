//! Refusals as gRPC statuses, in the richer error model so clients can read the retry hint
//! (`RetryInfo`) and tell overload from rate limiting (`ErrorInfo.reason`) without parsing text.
//!
//! Both are `RESOURCE_EXHAUSTED`, not the `UNAVAILABLE` the host's global limit answers with:
//! gRPC retry policies commonly retry `UNAVAILABLE` at once, which during a storm would feed the
//! very overload being shed, while these refusals ask the caller to back off for the hinted time.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{Limited, Shed};

/// `ErrorInfo.domain` of every refusal from this crate.
const DOMAIN: &str = "detour";

impl From<Shed> for Status {
    fn from(shed: Shed) -> Self {
        let mut details = ErrorDetails::with_retry_info(Some(shed.retry_after));
        details.set_error_info(
            "OVERLOADED",
            DOMAIN,
            HashMap::from([("priority".to_owned(), shed.priority.as_str().to_owned())]),
        );
        Status::with_error_details(Code::ResourceExhausted, shed.to_string(), details)
    }
}

impl From<Limited> for Status {
    fn from(limited: Limited) -> Self {
        let mut details = ErrorDetails::with_retry_info(Some(limited.retry_after));
        details.set_error_info("RATE_LIMITED", DOMAIN, HashMap::new());
        Status::with_error_details(Code::ResourceExhausted, limited.to_string(), details)
    }
}
