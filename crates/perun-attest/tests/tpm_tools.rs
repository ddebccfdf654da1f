//! Interop with a TPM client Perun did not write: `tpm2-tools` against an `swtpm`.
//! Quotes made by `tpm2_quote` verify in `perun-attest`, and credentials made by
//! Perun's software MakeCredential are opened by `tpm2_activatecredential`. Each
//! attack is refused with a message that names the cause.

use std::path::{Path, PathBuf};

use perun_attest::tpm::{alg, make_credential, verify_quote, AkPublic, PcrBank};
use perun_tpm::swtpm::Swtpm as SoftTpm;
use perun_tpm::tools::Tpm2Tools;

/// An swtpm with a tpm2-tools client and a folder for its files.
struct Swtpm {
    tools: Tpm2Tools,
    _dir: tempfile::TempDir,
    _tpm: SoftTpm,
}

impl Swtpm {
    fn start() -> Option<Self> {
        let tpm = SoftTpm::start_or_skip()?;
        let dir = tempfile::tempdir().unwrap();
        Some(Self { tools: Tpm2Tools::new(&tpm.tcti(), dir.path()), _dir: dir, _tpm: tpm })
    }

    fn path(&self, f: &str) -> PathBuf {
        self.tools.path(f)
    }

    fn tool(&self, args: &[&str]) -> String {
        self.tools.run(args).unwrap()
    }

    fn try_tool(&self, args: &[&str]) -> bool {
        self.tools.run(args).is_ok()
    }

    fn pcrs(&self, list: &str) -> PcrBank {
        self.tools.pcr_read(list).unwrap()
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

fn make_keys(tpm: &Swtpm, kind: &str, ak: &str) -> AkPublic {
    let (ek_alg, ak_alg, scheme) = if kind == "rsa" { ("rsa", "rsa", "rsassa") } else { ("ecc", "ecc", "ecdsa") };
    if !tpm.path("ek.ctx").exists() {
        tpm.tool(&["tpm2_createek", "-c", "ek.ctx", "-G", ek_alg, "-u", "ek.pub"]);
    }
    tpm.tool(&[
        "tpm2_createak",
        "-C",
        "ek.ctx",
        "-c",
        &format!("{ak}.ctx"),
        "-G",
        ak_alg,
        "-g",
        "sha256",
        "-s",
        scheme,
        "-u",
        &format!("{ak}.pub"),
        "-n",
        &format!("{ak}.name"),
    ]);
    let public = AkPublic::parse(&read(&tpm.path(&format!("{ak}.pub")))).unwrap();
    assert_eq!(public.name, read(&tpm.path(&format!("{ak}.name"))), "AK name differs from the TPM's");
    public.check_attestation_key().unwrap();
    public
}

fn quote_and_attacks(kind: &str) {
    let Some(tpm) = Swtpm::start() else { return };
    let ak = make_keys(&tpm, kind, "ak");
    let other = make_keys(&tpm, kind, "ak2");
    tpm.tool(&["tpm2_pcrextend", "10:sha256=0000000000000000000000000000000000000000000000000000000000000001"]);
    let nonce = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    for (ctx, msg, sig) in [("ak.ctx", "q.msg", "q.sig"), ("ak2.ctx", "q2.msg", "q2.sig")] {
        tpm.tool(&["tpm2_quote", "-c", ctx, "-l", "sha256:0,1,10", "-q", nonce, "-m", msg, "-s", sig, "-g", "sha256"]);
    }
    let pcrs = tpm.pcrs("0,1,10");
    let (msg, sig) = (read(&tpm.path("q.msg")), read(&tpm.path("q.sig")));
    let nonce = hex::decode(nonce).unwrap();
    let ok = verify_quote(&ak, &msg, &sig, &nonce, &pcrs).unwrap();
    assert_eq!(ok.quote.selection, vec![(alg::SHA256, vec![0, 1, 10])]);

    let e = verify_quote(&ak, &msg, &sig, b"another nonce", &pcrs).unwrap_err().to_string();
    assert!(e.contains("qualifying data"), "{e}");
    let mut edited = pcrs.clone();
    edited.values.insert(10, vec![0u8; 32]);
    let e = verify_quote(&ak, &msg, &sig, &nonce, &edited).unwrap_err().to_string();
    assert!(e.contains("edited"), "{e}");
    let mut fewer = pcrs.clone();
    fewer.values.remove(&1);
    let e = verify_quote(&ak, &msg, &sig, &nonce, &fewer).unwrap_err().to_string();
    assert!(e.contains("selects PCRs"), "{e}");
    // A quote signed by another AK of the same TPM.
    let (msg2, sig2) = (read(&tpm.path("q2.msg")), read(&tpm.path("q2.sig")));
    let e = verify_quote(&ak, &msg2, &sig2, &nonce, &pcrs).unwrap_err().to_string();
    assert!(e.contains("does not verify"), "{e}");
    verify_quote(&other, &msg2, &sig2, &nonce, &pcrs).unwrap();
    // One flipped bit of the quoted structure.
    let mut flipped = msg.clone();
    let at = flipped.len() - 5;
    flipped[at] ^= 1;
    let e = verify_quote(&ak, &flipped, &sig, &nonce, &pcrs).unwrap_err().to_string();
    assert!(e.contains("does not verify"), "{e}");
}

#[test]
fn rsa_quotes_from_tpm2_tools_verify_and_attacks_are_refused() {
    quote_and_attacks("rsa");
}

#[test]
fn ecdsa_quotes_from_tpm2_tools_verify_and_attacks_are_refused() {
    quote_and_attacks("ecc");
}

fn activate(tpm: &Swtpm, cred_file: &str, ak_ctx: &str) -> Option<Vec<u8>> {
    let _ = std::fs::remove_file(tpm.path("session.ctx"));
    tpm.tool(&["tpm2_startauthsession", "--policy-session", "-S", "session.ctx"]);
    tpm.tool(&["tpm2_policysecret", "-S", "session.ctx", "-c", "e"]);
    let ok = tpm.try_tool(&[
        "tpm2_activatecredential",
        "-c",
        ak_ctx,
        "-C",
        "ek.ctx",
        "-i",
        cred_file,
        "-o",
        "act.out",
        "-P",
        "session:session.ctx",
    ]);
    tpm.tool(&["tpm2_flushcontext", "-s"]);
    ok.then(|| read(&tpm.path("act.out")))
}

fn credential_round_trip(kind: &str) {
    let Some(tpm) = Swtpm::start() else { return };
    let ak = make_keys(&tpm, kind, "ak");
    let other = make_keys(&tpm, kind, "ak2");
    let ek = AkPublic::parse(&read(&tpm.path("ek.pub"))).unwrap();
    let secret = *b"perun credential challenge 32byt";
    let cred = make_credential(&ek, &ak.name, &secret).unwrap();
    std::fs::write(tpm.path("cred.out"), cred.to_tools_file()).unwrap();
    assert_eq!(activate(&tpm, "cred.out", "ak.ctx").as_deref(), Some(&secret[..]));
    // A credential bound to another AK's name does not open for this AK.
    let cred = make_credential(&ek, &other.name, &secret).unwrap();
    std::fs::write(tpm.path("cred2.out"), cred.to_tools_file()).unwrap();
    assert_eq!(activate(&tpm, "cred2.out", "ak.ctx"), None, "activated a credential made for another AK");
}

#[test]
fn rsa_credentials_from_perun_activate_in_the_tpm() {
    credential_round_trip("rsa");
}

#[test]
fn ecc_credentials_from_perun_activate_in_the_tpm() {
    credential_round_trip("ecc");
}
