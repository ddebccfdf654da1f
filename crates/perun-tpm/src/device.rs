//! A TPM 2.0 through `tss-esapi`: EK, AK, credential activation, quotes, PCRs.
//!
//! Works with any TCTI: `device:/dev/tpmrm0` in production, `swtpm:host=...,port=...`
//! here. The EK and AK stay loaded as two transient objects for the life of a [`Tpm`];
//! every session is flushed when its command is done and both objects are flushed on
//! drop, so a long-running worker never exhausts the TPM's object slots.

use std::convert::TryFrom;
use std::str::FromStr as _;

use perun_proto::evidence::{alg, PcrBank};
use tss_esapi::abstraction::{ak, ek, AsymmetricAlgorithmSelection, DefaultKey};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, PcrHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{AsymmetricAlgorithm, HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, Digest, DigestValues, EncryptedSecret, IdObject, PcrSelectionListBuilder, PcrSlot, Private, Public,
    SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall as _, UnMarshall as _};
use tss_esapi::Context;

use crate::tools::KeyAlg;
use crate::TpmError;

fn tss(what: &'static str) -> impl Fn(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Esapi { what, source }
}

/// An AK's key blob, kept by the worker so the same AK survives restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AkBlob {
    /// The `TPM2B_PRIVATE` contents (wrapped by the TPM; useless off this TPM).
    pub private: Vec<u8>,
    /// The `TPMT_PUBLIC`.
    pub public: Vec<u8>,
}

/// A connected TPM with its EK and AK loaded.
pub struct Tpm {
    ctx: Context,
    ek: KeyHandle,
    ek_public: Vec<u8>,
    ek_alg: KeyAlg,
    ak: Option<(KeyHandle, AkBlob)>,
}

impl Tpm {
    /// Connects through `tcti` and creates (re-derives) the EK of algorithm `ek_alg`.
    pub fn connect(tcti: &str, ek_alg: KeyAlg) -> Result<Self, TpmError> {
        let conf = TctiNameConf::from_str(tcti).map_err(tss("TCTI"))?;
        let mut ctx = Context::new(conf).map_err(tss("connection"))?;
        let alg = match ek_alg {
            KeyAlg::Rsa => AsymmetricAlgorithm::Rsa,
            KeyAlg::Ecc => AsymmetricAlgorithm::Ecc,
        };
        let ek = ek::create_ek_object(&mut ctx, alg, None::<DefaultKey>).map_err(tss("EK creation"))?;
        let (public, _, _) = ctx.read_public(ek).map_err(tss("EK read"))?;
        let ek_public = public.marshall().map_err(tss("EK marshalling"))?;
        Ok(Self { ctx, ek, ek_public, ek_alg, ak: None })
    }

    /// The EK certificate the manufacturer stored in the TPM's NV index (RSA 2048 EK:
    /// `0x01c00002`, ECC P-256 EK: `0x01c0000a`; TCG EK Credential Profile 2.5,
    /// section 2.2.1.4), as read: DER, possibly followed by padding.
    ///
    /// Errors: [`TpmError::EkCertificate`] when the index is absent (a TPM without an EK
    /// certificate; give one from a file to enrolment instead).
    pub fn ek_certificate(&mut self) -> Result<Vec<u8>, TpmError> {
        use tss_esapi::interface_types::ecc::EccCurve;
        use tss_esapi::interface_types::key_bits::RsaKeyBits;
        let alg = match self.ek_alg {
            KeyAlg::Rsa => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            KeyAlg::Ecc => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        };
        let nv_index = match self.ek_alg {
            KeyAlg::Rsa => perun_proto::evidence::NV_RSA_EK_CERT,
            KeyAlg::Ecc => perun_proto::evidence::NV_ECC_EK_CERT,
        };
        ek::retrieve_ek_pubcert(&mut self.ctx, alg).map_err(|source| TpmError::EkCertificate { nv_index, source })
    }

    /// The EK's `TPMT_PUBLIC`.
    pub fn ek_public(&self) -> &[u8] {
        &self.ek_public
    }

    /// Creates a new AK under the EK and loads it; returns its blob to keep.
    pub fn create_ak(&mut self, alg: KeyAlg) -> Result<AkBlob, TpmError> {
        let scheme = match alg {
            KeyAlg::Rsa => SignatureSchemeAlgorithm::RsaSsa,
            KeyAlg::Ecc => SignatureSchemeAlgorithm::EcDsa,
        };
        let r = ak::create_ak(&mut self.ctx, self.ek, HashingAlgorithm::Sha256, scheme, None, None::<DefaultKey>)
            .map_err(tss("AK creation"))?;
        let blob = AkBlob {
            private: r.out_private.value().to_vec(),
            public: r.out_public.marshall().map_err(tss("AK marshalling"))?,
        };
        self.load_ak(&blob)?;
        Ok(blob)
    }

    /// Loads a kept AK (after a restart).
    pub fn load_ak(&mut self, blob: &AkBlob) -> Result<(), TpmError> {
        let private = Private::try_from(blob.private.clone()).map_err(tss("AK private"))?;
        let public = Public::unmarshall(&blob.public).map_err(tss("AK public"))?;
        let handle = ak::load_ak(&mut self.ctx, self.ek, None, private, public).map_err(tss("AK load"))?;
        if let Some((old, _)) = self.ak.take() {
            let _ = self.ctx.flush_context(ObjectHandle::from(old));
        }
        self.ak = Some((handle, blob.clone()));
        Ok(())
    }

    fn ak_handle(&self) -> Result<KeyHandle, TpmError> {
        self.ak.as_ref().map(|(h, _)| *h).ok_or(TpmError::NoAk)
    }

    /// Answers a credential challenge (TPM2_ActivateCredential): recovers the secret
    /// only if this TPM holds the EK it was made for and the AK it names.
    pub fn activate_credential(&mut self, credential_blob: &[u8], secret: &[u8]) -> Result<Vec<u8>, TpmError> {
        let ak = self.ak_handle()?;
        let ek = self.ek;
        let blob = IdObject::try_from(credential_blob.to_vec()).map_err(tss("credential blob"))?;
        let secret = EncryptedSecret::try_from(secret.to_vec()).map_err(tss("credential secret"))?;
        let session = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(tss("policy session"))?
            .ok_or(TpmError::NoSession)?;
        let (attrs, mask) = SessionAttributesBuilder::new().with_decrypt(true).with_encrypt(true).build();
        let result = (|| {
            self.ctx.tr_sess_set_attributes(session, attrs, mask).map_err(tss("session attributes"))?;
            let policy = PolicySession::try_from(session).map_err(tss("policy session"))?;
            self.ctx
                .execute_with_nullauth_session(|ctx| {
                    ctx.policy_secret(
                        policy,
                        AuthHandle::Endorsement,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                        None,
                    )
                })
                .map_err(tss("PolicySecret"))?;
            self.ctx
                .execute_with_sessions((Some(AuthSession::Password), Some(session), None), |ctx| {
                    ctx.activate_credential(ak, ek, blob, secret)
                })
                .map_err(tss("ActivateCredential"))
        })();
        let _ = self.ctx.flush_context(ObjectHandle::from(SessionHandle::from(session)));
        Ok(result?.value().to_vec())
    }

    fn selection(pcrs: &[u32]) -> Result<tss_esapi::structures::PcrSelectionList, TpmError> {
        let slots: Vec<PcrSlot> =
            pcrs.iter().map(|&i| PcrSlot::try_from(1u32 << i).map_err(tss("PCR slot"))).collect::<Result<_, _>>()?;
        PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .map_err(tss("PCR selection"))
    }

    /// Quotes the SHA-256 `pcrs` over `qualifying_data`; returns `(TPMS_ATTEST,
    /// TPMT_SIGNATURE)` as the verifier reads them.
    pub fn quote(&mut self, pcrs: &[u32], qualifying_data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let ak = self.ak_handle()?;
        let data = Data::try_from(qualifying_data.to_vec()).map_err(tss("qualifying data"))?;
        let selection = Self::selection(pcrs)?;
        let (attest, signature) = self
            .ctx
            .execute_with_nullauth_session(|ctx| ctx.quote(ak, data, SignatureScheme::Null, selection))
            .map_err(tss("Quote"))?;
        Ok((attest.marshall().map_err(tss("quote"))?, signature.marshall().map_err(tss("signature"))?))
    }

    /// Reads SHA-256 PCRs.
    pub fn pcr_read(&mut self, pcrs: &[u32]) -> Result<PcrBank, TpmError> {
        let mut values = std::collections::BTreeMap::new();
        // The TPM returns at most 8 digests per call.
        for chunk in pcrs.chunks(8) {
            let (_, _, digests) = self.ctx.pcr_read(Self::selection(chunk)?).map_err(tss("PCR_Read"))?;
            for (i, d) in chunk.iter().zip(digests.value()) {
                values.insert(*i, d.value().to_vec());
            }
        }
        Ok(PcrBank { hash_alg: alg::SHA256, values })
    }
}

impl crate::ima::PcrExtender for Tpm {
    fn extend_pcr10(&mut self, sha1: &[u8; 20], sha256: &[u8; 32]) -> Result<(), TpmError> {
        let mut values = DigestValues::new();
        values.set(HashingAlgorithm::Sha1, Digest::try_from(sha1.to_vec()).map_err(tss("digest"))?);
        values.set(HashingAlgorithm::Sha256, Digest::try_from(sha256.to_vec()).map_err(tss("digest"))?);
        self.ctx
            .execute_with_nullauth_session(|ctx| ctx.pcr_extend(PcrHandle::Pcr10, values))
            .map_err(tss("PCR_Extend"))
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        if let Some((ak, _)) = self.ak.take() {
            let _ = self.ctx.flush_context(ObjectHandle::from(ak));
        }
        let _ = self.ctx.flush_context(ObjectHandle::from(self.ek));
    }
}
