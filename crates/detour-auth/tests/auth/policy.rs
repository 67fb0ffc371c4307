//! `proto/policy.toml` against the contracts, and the choices it makes.

use std::collections::BTreeSet;

use detour_auth::{Policy, Principal, Role};

/// Every RPC of every `detour.*` service in the compiled contracts, as `package.Service/Method`.
fn rpcs_in_contracts() -> BTreeSet<String> {
    detour_proto::rpc_names(detour_proto::FILE_DESCRIPTOR_SET)
        .into_iter()
        .filter(|n| n.starts_with("detour."))
        .collect()
}

#[test]
fn the_policy_covers_exactly_the_rpcs_of_the_contracts() {
    let contracts = rpcs_in_contracts();
    assert!(contracts.len() >= 15, "the descriptor set was read: {contracts:?}");
    assert!(contracts.contains("detour.intake.v1.IntakeService/OpenCase"));
    let policy = Policy::embedded().unwrap();
    let listed: BTreeSet<String> = policy.rules().map(|(rpc, _)| rpc.to_owned()).collect();

    let missing: Vec<_> = contracts.difference(&listed).collect();
    assert!(missing.is_empty(), "RPCs without a policy entry in proto/policy.toml: {missing:?}");
    let unknown: Vec<_> = listed.difference(&contracts).collect();
    assert!(unknown.is_empty(), "policy entries for RPCs that do not exist: {unknown:?}");
}

fn allowed(policy: &Policy, role: Role) -> BTreeSet<&str> {
    let principal = Principal::user("u", [role], "i");
    policy.rules().filter(|(rpc, _)| policy.check(rpc, &principal).is_ok()).map(|(rpc, _)| rpc).collect()
}

#[test]
fn the_policy_makes_the_intended_choices() {
    let policy = Policy::embedded().unwrap();
    let all: BTreeSet<&str> = policy.rules().map(|(rpc, _)| rpc).collect();
    let agent = allowed(&policy, Role::Agent);
    let supervisor = allowed(&policy, Role::Supervisor);
    let finance = allowed(&policy, Role::Finance);
    let crisis = allowed(&policy, Role::CrisisManager);
    let partner = allowed(&policy, Role::Partner);

    assert_eq!(allowed(&policy, Role::Admin), all, "admin may call everything");
    for rpc in [
        "detour.intake.v1.IntakeService/OpenCase",
        "detour.intake.v1.IntakeService/ListCases",
        "detour.intake.v1.IntakeService/GetCase",
        "detour.intake.v1.IntakeService/ResolveCase",
        "detour.supplier.v1.SupplierService/RecordSupplierResponse",
    ] {
        assert!(agent.contains(rpc), "agents: {rpc}");
    }
    assert!(!agent.contains("detour.compensation.v1.CompensationService/AcceptOffer"));
    assert!(supervisor.is_superset(&agent), "supervisors do everything agents do");
    assert_eq!(
        supervisor.difference(&agent).copied().collect::<Vec<_>>(),
        [
            "detour.audit.v1.AuditService/ListAuditRecords",
            "detour.compensation.v1.CompensationService/AcceptOffer",
            "detour.feedback.v1.FeedbackService/GetSurvey",
            "detour.feedback.v1.FeedbackService/ListSurveys",
            "detour.intake.v1.IntakeService/EraseTraveler",
            "detour.intake.v1.IntakeService/ExportTraveler",
        ],
        "supervisors also read the audit trail and handle data-subject requests"
    );
    assert!(!agent.contains("detour.intake.v1.IntakeService/EraseTraveler"), "agents never erase");
    assert!(!crisis.contains("detour.audit.v1.AuditService/ListAuditRecords"));
    assert_eq!(
        finance.into_iter().collect::<Vec<_>>(),
        [
            "detour.compensation.v1.CompensationService/AcceptOffer",
            "detour.compensation.v1.CompensationService/GetOffer",
            "detour.compensation.v1.CompensationService/ListOffers",
        ],
        "finance reads and accepts offers, nothing else"
    );
    assert_eq!(
        partner.into_iter().collect::<Vec<_>>(),
        [
            "detour.supplier.v1.SupplierService/GetSupplierRequest",
            "detour.supplier.v1.SupplierService/ListSupplierRequests",
            "detour.supplier.v1.SupplierService/RecordSupplierResponse",
        ],
        "partners only see and answer supplier requests"
    );
    let survey_answer = "detour.feedback.v1.FeedbackService/SubmitSurveyResponse";
    // Not theirs: answering a traveler's survey, data-subject requests, reading the audit trail.
    let not_theirs = [
        survey_answer,
        "detour.intake.v1.IntakeService/EraseTraveler",
        "detour.intake.v1.IntakeService/ExportTraveler",
        "detour.audit.v1.AuditService/ListAuditRecords",
    ];
    let on_cases: BTreeSet<&str> = all.iter().copied().filter(|rpc| !not_theirs.contains(rpc)).collect();
    assert_eq!(crisis, on_cases, "crisis managers do everything on cases, nothing else");
    assert!(policy.rule(survey_answer).unwrap().services, "travelers answer through a channel service");
}
