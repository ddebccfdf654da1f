//! The Verifier's integration tests, one test binary: EK certificates and boot logs of
//! real machines (`ek`), TEE evidence no one here made (`tee`), and interop with
//! tpm2-tools against an swtpm (`tpm_tools`).

mod ek;
mod tee;
mod tpm_tools;
