//! `perun-tpm` against an swtpm: EK and AK through tss-esapi, quotes that verify in
//! `perun-attest` and in `tpm2_checkquote`, credentials from Perun's software
//! MakeCredential activated in the TPM, an AK kept across restarts, and no leaked
//! objects over many rounds.

use perun_attest::tpm::{make_credential, verify_quote, AkPublic};
use perun_tpm::device::Tpm;
use perun_tpm::swtpm::Swtpm;
use perun_tpm::tools::KeyAlg;

fn round_trip(alg: KeyAlg) {
    let Some(sw) = Swtpm::start_or_skip() else { return };
    let mut tpm = Tpm::connect(&sw.tcti(), alg).unwrap();
    let blob = tpm.create_ak(alg).unwrap();
    let ak = AkPublic::parse_tpmt(&blob.public).unwrap();
    ak.check_attestation_key().unwrap();
    let ek = AkPublic::parse_tpmt(tpm.ek_public()).unwrap();

    // Credential activation binds the AK to the EK.
    let secret = [7u8; 32];
    let cred = make_credential(&ek, &ak.name, &secret).unwrap();
    assert_eq!(tpm.activate_credential(&cred.credential_blob, &cred.secret).unwrap(), secret);
    let mut other_name = ak.name.clone();
    other_name[5] ^= 1;
    let cred = make_credential(&ek, &other_name, &secret).unwrap();
    assert!(tpm.activate_credential(&cred.credential_blob, &cred.secret).is_err(), "activated for another AK name");

    // Quotes verify in perun-attest, many times over (no object leaks).
    for round in 0..30u8 {
        tpm.extend_pcr10(&[round; 20], &[round; 32]);
        let nonce = [round; 32];
        let (attest, sig) = tpm.quote(&[0, 1, 10], &nonce).unwrap();
        let pcrs = tpm.pcr_read(&[0, 1, 10]).unwrap();
        verify_quote(&ak, &attest, &sig, &nonce, &pcrs).unwrap();
    }

    // The same AK after a restart of the worker.
    drop(tpm);
    let mut tpm = Tpm::connect(&sw.tcti(), alg).unwrap();
    tpm.load_ak(&blob).unwrap();
    let (attest, sig) = tpm.quote(&[10], b"after restart").unwrap();
    let pcrs = tpm.pcr_read(&[10]).unwrap();
    verify_quote(&ak, &attest, &sig, b"after restart", &pcrs).unwrap();

    // And tpm2_checkquote, which Perun did not write, accepts Perun's quote.
    let dir = tempfile::tempdir().unwrap();
    let mut tpm2b = (blob.public.len() as u16).to_be_bytes().to_vec();
    tpm2b.extend_from_slice(&blob.public);
    std::fs::write(dir.path().join("ak.pub"), tpm2b).unwrap();
    std::fs::write(dir.path().join("q.msg"), &attest).unwrap();
    std::fs::write(dir.path().join("q.sig"), &sig).unwrap();
    let out = std::process::Command::new("tpm2_checkquote")
        .current_dir(dir.path())
        .args(["-u", "ak.pub", "-m", "q.msg", "-s", "q.sig", "-g", "sha256", "-q"])
        .arg(hex::encode(b"after restart"))
        .output()
        .unwrap();
    assert!(out.status.success(), "tpm2_checkquote refused: {}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new("tpm2_checkquote")
        .current_dir(dir.path())
        .args(["-u", "ak.pub", "-m", "q.msg", "-s", "q.sig", "-g", "sha256", "-q", "00"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "tpm2_checkquote accepted a wrong nonce");
}

trait Extend {
    fn extend_pcr10(&mut self, a: &[u8; 20], b: &[u8; 32]);
}

impl Extend for Tpm {
    fn extend_pcr10(&mut self, a: &[u8; 20], b: &[u8; 32]) {
        perun_tpm::ima::PcrExtender::extend_pcr10(self, a, b).unwrap();
    }
}

#[test]
fn rsa_ek_and_ak_through_tss_esapi() {
    round_trip(KeyAlg::Rsa);
}

#[test]
fn ecc_ek_and_ak_through_tss_esapi() {
    round_trip(KeyAlg::Ecc);
}
