//! Encryption of cached values at rest (`encrypt = true`).
//!
//! XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`), a fresh random 192-bit
//! nonce per value, and the full stored key as associated data: a ciphertext
//! copied under another key does not authenticate and reads as a miss. Keys
//! carry a one-byte id recorded with each value, so after a rotation values
//! written under an older key still decrypt while new ones use the newest.
//!
//! Sealed payload: `key id (1) | nonce (24) | ciphertext + tag (16)`.

use std::collections::HashMap;
use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

/// Why a sealed value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CryptoError {
    #[error("no encryption key configured")]
    NoKey,
    #[error("value sealed under unknown key id {0}")]
    UnknownKey(u8),
    #[error("sealed value too short")]
    Truncated,
    #[error("value does not authenticate (tampered, or moved from another key)")]
    Forged,
}

/// The encryption keys of a cache, by id; the newest added seals.
#[derive(Clone, Default)]
pub(crate) struct Keyring {
    keys: HashMap<u8, XChaCha20Poly1305>,
    primary: Option<u8>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<u8> = self.keys.keys().copied().collect();
        ids.sort_unstable();
        f.debug_struct("Keyring")
            .field("key_ids", &ids)
            .field("primary", &self.primary)
            .finish()
    }
}

impl Keyring {
    pub(crate) fn add(&mut self, id: u8, key: &[u8; 32]) {
        self.keys.insert(id, XChaCha20Poly1305::new(key.into()));
        self.primary = Some(id);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Encrypts `plain` bound to `aad` under the primary key.
    pub(crate) fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let id = self.primary.ok_or(CryptoError::NoKey)?;
        let cipher = self.keys.get(&id).ok_or(CryptoError::NoKey)?;
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| CryptoError::Forged)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`seal`](Keyring::seal) produced for the same `aad`.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&id, rest) = sealed.split_first().ok_or(CryptoError::Truncated)?;
        if rest.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Truncated);
        }
        let cipher = self.keys.get(&id).ok_or(CryptoError::UnknownKey(id))?;
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        cipher
            .decrypt(&XNonce::from(n), Payload { msg: body, aad })
            .map_err(|_| CryptoError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_rotation_and_binding() {
        let mut old = Keyring::default();
        old.add(1, &[7; 32]);
        let sealed = old.seal(b"p:{user:1}", b"secret").unwrap();
        assert_ne!(&sealed[25..], b"secret");
        assert_eq!(old.open(b"p:{user:1}", &sealed).unwrap(), b"secret");
        assert_eq!(
            old.open(b"p:{user:2}", &sealed),
            Err(CryptoError::Forged),
            "bound to its key"
        );

        let mut rotated = old.clone();
        rotated.add(2, &[9; 32]);
        assert_eq!(
            rotated.open(b"p:{user:1}", &sealed).unwrap(),
            b"secret",
            "old key id still reads"
        );
        let new = rotated.seal(b"k", b"v").unwrap();
        assert_eq!(new[0], 2, "new values use the newest key");
        assert_eq!(old.open(b"k", &new), Err(CryptoError::UnknownKey(2)));

        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(old.open(b"p:{user:1}", &tampered), Err(CryptoError::Forged));
        assert_eq!(
            old.open(b"p:{user:1}", &sealed[..10]),
            Err(CryptoError::Truncated)
        );
    }

    #[test]
    fn debug_shows_key_ids_and_no_key_material() {
        let mut ring = Keyring::default();
        ring.add(1, &[0xab; 32]);
        ring.add(2, &[0xcd; 32]);
        assert_eq!(
            format!("{ring:?}"),
            "Keyring { key_ids: [1, 2], primary: Some(2) }",
            "ids only: nothing of the keys, in any notation"
        );
        assert_eq!(format!("{ring:#?}").matches("key_ids").count(), 1);
    }
}
