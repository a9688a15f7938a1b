//! Secrets at rest: source passwords and pipelines' destination secrets are sealed with AES-256-GCM under
//! the API's encryption key before they reach the control database, so a copy of that database
//! (a backup, a dump) holds no usable secret. API keys are not encrypted but hashed: nothing
//! ever needs them back.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use philotes_core::{Error, ErrorKind, Result, Secret};
use rand::RngCore;

const NONCE: usize = 12;

/// The API's encryption key.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(***)")
    }
}

impl Cipher {
    /// A key of 32 bytes, written as base64 (44 characters, `openssl rand -base64 32`) or hex
    /// (64 characters).
    pub fn from_text(key: &Secret) -> Result<Cipher> {
        let text = key.expose().trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        let bytes = bytes.filter(|b| b.len() == 32).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "the encryption key (PHILOTES_ENCRYPTION_KEY or --encryption-key-file) must be 32 bytes in base64 or hex; make one with `openssl rand -base64 32`",
            )
        })?;
        let aead = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| Error::new(ErrorKind::Config, "the encryption key must be 32 bytes"))?;
        Ok(Cipher { aead })
    }

    /// `nonce || ciphertext`, bound to `purpose` (a sealed value cannot be moved to another
    /// column and still open).
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| Error::new(ErrorKind::Internal, "cannot encrypt a secret"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Secret> {
        let wrong = || {
            Error::new(
                ErrorKind::Config,
                "a stored secret cannot be decrypted: the API runs with another encryption key than the one that stored it (PHILOTES_ENCRYPTION_KEY); start it with that key, or set the secret again",
            )
        };
        if sealed.len() < NONCE {
            return Err(wrong());
        }
        let (nonce, body) = sealed.split_at(NONCE);
        let plain = self
            .aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| wrong())?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_same_key_and_purpose() -> Result<()> {
        let key = Secret::new(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
        let c = Cipher::from_text(&key)?;
        let sealed = c.seal("source-password", b"hunter2")?;
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(c.open("source-password", &sealed)?.expose(), "hunter2");
        assert!(c.open("other", &sealed).is_err());
        let other = Cipher::from_text(&Secret::new("11".repeat(32)))?;
        assert!(other.open("source-password", &sealed).is_err());
        assert!(Cipher::from_text(&Secret::new("short")).is_err());
        // Two seals of one value differ (a fresh nonce each time).
        assert_ne!(sealed, c.seal("source-password", b"hunter2")?);
        Ok(())
    }
}
