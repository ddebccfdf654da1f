//! The job runner over an enclave (feature `enclave`): in `tee` mode the attester is the
//! enclave that claimed the job (`perun-enclave`), as the TPM agent is in `attested` mode.
//! The enclave crate knows nothing of the job runner; this impl joins them.

use perun_client::Client;
use perun_core::Digest;
use perun_enclave::{Enclave, EnclaveError};
use perun_proto::wire::FinishJob;

use crate::job::Attester;
use crate::WorkerError;

impl Attester for Enclave {
    fn reattest(&mut self, job: &Digest) -> Result<usize, WorkerError> {
        if *job != self.job() {
            return Err(WorkerError::WrongJob { running: self.job(), asked: *job });
        }
        match Enclave::reattest(self) {
            Ok(_) => Ok(0),
            Err(EnclaveError::Trust(e)) => Err(WorkerError::Trust(e)),
            Err(e) => Err(WorkerError::Attester(Box::new(e))),
        }
    }

    fn finish(&mut self, job: &Digest, body: FinishJob) -> Result<(), WorkerError> {
        // The token that authenticates this call was sealed to the enclave's attested key
        // and never left it: in `tee` mode the service takes the claims on it.
        self.client().finish(job, &body)?;
        Ok(())
    }

    fn client(&self) -> &Client {
        Enclave::client(self)
    }
}
