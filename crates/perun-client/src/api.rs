//! The `/v1` API as typed calls: one method per route, each with its request and answer
//! types from `perun-proto`, so no caller spells a method or a path. The service's
//! OpenAPI document (`GET /v1/openapi.json`) describes the same routes.
//!
//! Every method sends one request (failing over between replicas as [`Client::call`]
//! does) and returns the service's refusal as the matching [`ClientError`] variant.
//! Which caller a route needs is the service's rule: stakeholder routes want a
//! [`crate::Caller::Stakeholder`], worker routes a [`crate::Caller::Worker`], and the
//! enrolment and enclave steps none.

use perun_core::receipt::Envelope;
use perun_core::{Digest, Name};
use perun_proto::wire::{
    ActivateAk, AdmitVote, Application, ApproveJob, AssetInfo, Attest, AttestEnclave, Attested, AuditLog, Claimed,
    CredentialChallenge, EnclaveAttested, EnclaveNonce, EnrolWorker, FailJob, FinishJob, JobInfo, JobMetrics,
    NonceIssued, OfferedJob, OutputKey, PolicyInfo, PresentAk, ProposeJob, RegisterAsset, RegisterStakeholder,
    Registration, ReportMetrics, ReviewOutput, RevokeJob, ServiceInfo, WorkerInfo,
};

use crate::{Client, ClientError};

const NONE: Option<&()> = None;

impl Client {
    /// `GET /v1/service`: who the service is (fingerprint, wrap recipient, audit key).
    pub fn service(&self) -> Result<ServiceInfo, ClientError> {
        self.call("GET", "/v1/service", NONE)
    }

    /// `POST /v1/stakeholders`: registers the calling stakeholder with its roles.
    pub fn register_stakeholder(&self, body: &RegisterStakeholder) -> Result<Registration, ClientError> {
        self.call("POST", "/v1/stakeholders", Some(body))
    }

    /// `GET /v1/applications`: the registrations awaiting admission (for members).
    pub fn applications(&self) -> Result<Vec<Application>, ClientError> {
        self.call("GET", "/v1/applications", NONE)
    }

    /// `POST /v1/applications/{name}/admit`: this member's vote to admit `name`, whose key
    /// has `fingerprint` (as the voter checked it with the applicant).
    pub fn vote_admission(&self, name: &Name, fingerprint: &str) -> Result<Registration, ClientError> {
        let body = AdmitVote { fingerprint: fingerprint.to_owned() };
        self.call("POST", &format!("/v1/applications/{name}/admit"), Some(&body))
    }

    /// `POST /v1/assets`: registers a sealed asset (descriptor, wrapped key, terms).
    pub fn register_asset(&self, body: &RegisterAsset) -> Result<AssetInfo, ClientError> {
        self.call("POST", "/v1/assets", Some(body))
    }

    /// `GET /v1/assets`: the caller's own assets.
    pub fn assets(&self) -> Result<Vec<AssetInfo>, ClientError> {
        self.call("GET", "/v1/assets", NONE)
    }

    /// `GET /v1/assets/{name}`: one of the caller's assets, with its terms and ledger.
    pub fn asset(&self, name: &Name) -> Result<AssetInfo, ClientError> {
        self.call("GET", &format!("/v1/assets/{name}"), NONE)
    }

    /// `POST /v1/policies`: publishes a platform or TEE policy, given as its JSON
    /// (sent as it is: its digest is over these bytes' canonical form, which the service
    /// computes).
    pub fn publish_policy(&self, policy_json: Vec<u8>) -> Result<PolicyInfo, ClientError> {
        self.call_raw("POST", "/v1/policies", policy_json)
    }

    /// `GET /v1/policies/{digest}`: a published policy, readable by every stakeholder.
    pub fn policy(&self, digest: &Digest) -> Result<PolicyInfo, ClientError> {
        self.call("GET", &format!("/v1/policies/{digest}"), NONE)
    }

    /// `POST /v1/jobs`: proposes a job manifest.
    pub fn propose(&self, body: &ProposeJob) -> Result<JobInfo, ClientError> {
        self.call("POST", "/v1/jobs", Some(body))
    }

    /// `GET /v1/jobs`: the jobs the caller takes part in.
    pub fn jobs(&self) -> Result<Vec<JobInfo>, ClientError> {
        self.call("GET", "/v1/jobs", NONE)
    }

    /// `GET /v1/jobs/{id}`: one job, its manifest, approvals and state.
    pub fn job(&self, job: &Digest) -> Result<JobInfo, ClientError> {
        self.call("GET", &format!("/v1/jobs/{job}"), NONE)
    }

    /// `POST /v1/jobs/{id}/approve`: the caller's signed approval of `job`.
    pub fn approve(&self, job: &Digest, body: &ApproveJob) -> Result<JobInfo, ClientError> {
        self.call("POST", &format!("/v1/jobs/{job}/approve"), Some(body))
    }

    /// `POST /v1/jobs/{id}/revoke`: withdraws a job (an approver) or ends it.
    pub fn revoke(&self, job: &Digest, body: &RevokeJob) -> Result<JobInfo, ClientError> {
        self.call("POST", &format!("/v1/jobs/{job}/revoke"), Some(body))
    }

    /// `GET /v1/jobs/{id}/metrics`: the training metrics the worker reported.
    pub fn job_metrics(&self, job: &Digest) -> Result<JobMetrics, ClientError> {
        self.call("GET", &format!("/v1/jobs/{job}/metrics"), NONE)
    }

    /// `POST /v1/jobs/{id}/metrics`: a worker's metrics for one epoch.
    pub fn report_metrics(&self, job: &Digest, body: &ReportMetrics) -> Result<(), ClientError> {
        self.call("POST", &format!("/v1/jobs/{job}/metrics"), Some(body))
    }

    /// `POST /v1/jobs/{id}/claim`: a worker claims an offered job.
    pub fn claim(&self, job: &Digest) -> Result<Claimed, ClientError> {
        self.call("POST", &format!("/v1/jobs/{job}/claim"), NONE)
    }

    /// `POST /v1/jobs/{id}/nonce`: a fresh attestation nonce for a worker's job.
    pub fn nonce(&self, job: &Digest) -> Result<NonceIssued, ClientError> {
        self.call("POST", &format!("/v1/jobs/{job}/nonce"), NONE)
    }

    /// `POST /v1/jobs/{id}/attest`: TPM evidence for `job`; the answer carries the keys
    /// released to the attested ephemeral key, if the release rule allows.
    pub fn attest(&self, job: &Digest, body: &Attest) -> Result<Attested, ClientError> {
        self.call("POST", &format!("/v1/jobs/{job}/attest"), Some(body))
    }

    /// `POST /v1/jobs/{id}/finish`: the outputs and, in `attested` mode, the last quote.
    pub fn finish(&self, job: &Digest, body: &FinishJob) -> Result<(), ClientError> {
        self.call("POST", &format!("/v1/jobs/{job}/finish"), Some(body))
    }

    /// `POST /v1/jobs/{id}/fail`: a worker gives the job up, saying why.
    pub fn fail(&self, job: &Digest, body: &FailJob) -> Result<(), ClientError> {
        self.call("POST", &format!("/v1/jobs/{job}/fail"), Some(body))
    }

    /// `GET /v1/jobs/{id}/receipt`: the training receipt (DSSE envelope, audit key).
    pub fn receipt(&self, job: &Digest) -> Result<Envelope, ClientError> {
        self.call("GET", &format!("/v1/jobs/{job}/receipt"), NONE)
    }

    /// `POST /v1/jobs/{id}/review`: a reviewer's signed release or refusal.
    pub fn review(&self, job: &Digest, body: &ReviewOutput) -> Result<JobInfo, ClientError> {
        self.call("POST", &format!("/v1/jobs/{job}/review"), Some(body))
    }

    /// `GET /v1/jobs/{id}/outputs/{name}/key`: an output's key, wrapped to the caller
    /// (a receiver), once every review released it.
    pub fn output_key(&self, job: &Digest, output: &str) -> Result<OutputKey, ClientError> {
        self.call("GET", &format!("/v1/jobs/{job}/outputs/{output}/key"), NONE)
    }

    /// `POST /v1/workers`: a provider enrols a worker by its EK.
    pub fn enrol_worker(&self, body: &EnrolWorker) -> Result<WorkerInfo, ClientError> {
        self.call("POST", "/v1/workers", Some(body))
    }

    /// `GET /v1/workers`: the provider's workers.
    pub fn workers(&self) -> Result<Vec<WorkerInfo>, ClientError> {
        self.call("GET", "/v1/workers", NONE)
    }

    /// `DELETE /v1/workers/{name}`: de-enrols a worker (its running jobs are revoked).
    pub fn deenrol_worker(&self, name: &Name) -> Result<WorkerInfo, ClientError> {
        self.call("DELETE", &format!("/v1/workers/{name}"), NONE)
    }

    /// `POST /v1/workers/{name}/ak`: a worker presents an AK; the answer is a
    /// MakeCredential challenge to its EK (TPM 2.0 Part 1, 24).
    pub fn present_ak(&self, worker: &Name, body: &PresentAk) -> Result<CredentialChallenge, ClientError> {
        self.call("POST", &format!("/v1/workers/{worker}/ak"), Some(body))
    }

    /// `POST /v1/workers/{name}/activate`: the activated credential, which becomes the
    /// worker's token.
    pub fn activate_ak(&self, worker: &Name, body: &ActivateAk) -> Result<(), ClientError> {
        self.call("POST", &format!("/v1/workers/{worker}/activate"), Some(body))
    }

    /// `GET /v1/worker/jobs`: the approved jobs offered to the calling worker.
    pub fn offered(&self) -> Result<Vec<OfferedJob>, ClientError> {
        self.call("GET", "/v1/worker/jobs", NONE)
    }

    /// `POST /v1/enclave/jobs/{id}/nonce`: a nonce for an enclave's first report.
    pub fn enclave_nonce(&self, job: &Digest, body: &EnclaveNonce) -> Result<NonceIssued, ClientError> {
        self.call("POST", &format!("/v1/enclave/jobs/{job}/nonce"), Some(body))
    }

    /// `POST /v1/enclave/jobs/{id}/attest`: a TEE report for a `tee` job.
    pub fn attest_enclave(&self, job: &Digest, body: &AttestEnclave) -> Result<EnclaveAttested, ClientError> {
        self.call("POST", &format!("/v1/enclave/jobs/{job}/attest"), Some(body))
    }

    /// `GET /v1/audit`: the audit records the caller may see, chained and signed.
    pub fn audit(&self) -> Result<AuditLog, ClientError> {
        self.call("GET", "/v1/audit", NONE)
    }
}
