//! Authentication: API keys and the HMAC-SHA256 logon challenge.
//!
//! On connect the server sends 32 random bytes (the nonce, drawn by the caller: this
//! module has no randomness). The client answers with
//! `HMAC-SHA256(secret, nonce || key_id as u64 little-endian)`. The server recomputes it
//! and compares in constant time (`hmac::Mac::verify_slice`). A fresh nonce per
//! connection means a recorded logon cannot be replayed.

use std::collections::BTreeMap;

use bourse_engine::AccountId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the server's logon nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of an HMAC-SHA256 signature.
pub const SIGNATURE_BYTES: usize = 32;
/// Bytes of an API key secret. 32 bytes match SHA-256's security level.
pub const SECRET_BYTES: usize = 32;
/// Most API keys a server holds (a named bound on the key table).
pub const KEYS_MAX: usize = 100_000;

pub type KeyId = u64;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Trades, cancels and queries for exactly this account; nothing else.
    Trader { account: AccountId },
    /// Runs admin messages (assets, markets, ledger, market status, status); cannot trade.
    Admin,
}

impl Role {
    /// The account a trader key acts for; `None` for admin keys.
    pub fn account(&self) -> Option<AccountId> {
        match self {
            Role::Trader { account } => Some(*account),
            Role::Admin => None,
        }
    }
}

/// One API key. Keys come from the server's configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub key_id: KeyId,
    pub secret: [u8; SECRET_BYTES],
    pub role: Role,
}

impl std::fmt::Debug for ApiKey {
    // The secret never goes into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("key_id", &self.key_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown API key")]
    UnknownKey,
    #[error("signature does not match")]
    BadSignature,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key id {0} appears twice")]
    DuplicateKey(KeyId),
    #[error("more than {KEYS_MAX} keys")]
    TooManyKeys,
    #[error("key id 0 is reserved")]
    ZeroKeyId,
}

/// The message a client signs: the nonce, then its key id.
fn signed_bytes(nonce: &[u8; NONCE_BYTES], key_id: KeyId) -> [u8; NONCE_BYTES + 8] {
    let mut bytes = [0u8; NONCE_BYTES + 8];
    bytes[..NONCE_BYTES].copy_from_slice(nonce);
    bytes[NONCE_BYTES..].copy_from_slice(&key_id.to_le_bytes());
    bytes
}

fn mac(secret: &[u8; SECRET_BYTES]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts any key length"),
    }
}

/// The client's logon signature (also what the client library calls).
pub fn sign(
    secret: &[u8; SECRET_BYTES],
    nonce: &[u8; NONCE_BYTES],
    key_id: KeyId,
) -> [u8; SIGNATURE_BYTES] {
    let mut mac = mac(secret);
    mac.update(&signed_bytes(nonce, key_id));
    mac.finalize().into_bytes().into()
}

/// Checks `signature` in constant time.
pub fn verify(
    secret: &[u8; SECRET_BYTES],
    nonce: &[u8; NONCE_BYTES],
    key_id: KeyId,
    signature: &[u8],
) -> Result<(), AuthError> {
    let mut mac = mac(secret);
    mac.update(&signed_bytes(nonce, key_id));
    mac.verify_slice(signature).map_err(|_| AuthError::BadSignature)
}

/// The API keys a server accepts, by key id.
#[derive(Clone, Debug, Default)]
pub struct KeyStore {
    keys: BTreeMap<KeyId, ApiKey>,
}

impl KeyStore {
    pub fn new(keys: impl IntoIterator<Item = ApiKey>) -> Result<KeyStore, KeyStoreError> {
        let mut store = KeyStore::default();
        for key in keys {
            if key.key_id == 0 {
                return Err(KeyStoreError::ZeroKeyId);
            }
            if store.keys.len() == KEYS_MAX {
                return Err(KeyStoreError::TooManyKeys);
            }
            let key_id = key.key_id;
            if store.keys.insert(key_id, key).is_some() {
                return Err(KeyStoreError::DuplicateKey(key_id));
            }
        }
        Ok(store)
    }

    /// Every key, by ascending key id.
    pub fn iter(&self) -> impl Iterator<Item = &ApiKey> + '_ {
        self.keys.values()
    }

    pub fn get(&self, key_id: KeyId) -> Option<&ApiKey> {
        self.keys.get(&key_id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Authenticates a logon: the key exists and signed this connection's nonce.
    pub fn authenticate(
        &self,
        nonce: &[u8; NONCE_BYTES],
        key_id: KeyId,
        signature: &[u8],
    ) -> Result<&ApiKey, AuthError> {
        let key = self.keys.get(&key_id).ok_or(AuthError::UnknownKey)?;
        verify(&key.secret, nonce, key_id, signature)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> KeyStore {
        KeyStore::new([
            ApiKey { key_id: 7, secret: [1; 32], role: Role::Trader { account: 42 } },
            ApiKey { key_id: 9, secret: [2; 32], role: Role::Admin },
        ])
        .unwrap()
    }

    #[test]
    fn signature_round_trip() {
        let nonce = [5u8; NONCE_BYTES];
        let signature = sign(&[1; 32], &nonce, 7);
        let store = store();
        let key = store.authenticate(&nonce, 7, &signature).unwrap();
        assert_eq!(key.role, Role::Trader { account: 42 });
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256(key = 32 x 0x01, data = 32 x 0x05 || 07 00 00 00 00 00 00 00),
        // computed independently with Python's hmac module.
        let signature = sign(&[1; 32], &[5; 32], 7);
        let hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "d7d56a2f3e35883bb0e294df1ca3f523bd1b27ac12c6c753ee9206c4f5138fba");
    }

    #[test]
    fn rejects_wrong_signature_key_and_nonce() {
        let store = store();
        let nonce = [5u8; NONCE_BYTES];
        let good = sign(&[1; 32], &nonce, 7);
        let mut flipped = good;
        flipped[31] ^= 1;
        assert_eq!(store.authenticate(&nonce, 7, &flipped).err(), Some(AuthError::BadSignature));
        assert_eq!(store.authenticate(&nonce, 7, &good[..31]).err(), Some(AuthError::BadSignature));
        assert_eq!(store.authenticate(&nonce, 8, &good).err(), Some(AuthError::UnknownKey));
        // Another key's secret, or another connection's nonce, does not verify.
        assert_eq!(store.authenticate(&nonce, 9, &good).err(), Some(AuthError::BadSignature));
        assert_eq!(
            store.authenticate(&[6; NONCE_BYTES], 7, &good).err(),
            Some(AuthError::BadSignature)
        );
    }

    #[test]
    fn key_store_checks_ids() {
        let key = ApiKey { key_id: 1, secret: [0; 32], role: Role::Admin };
        assert_eq!(
            KeyStore::new([key.clone(), key.clone()]).err(),
            Some(KeyStoreError::DuplicateKey(1))
        );
        let zero = ApiKey { key_id: 0, ..key };
        assert_eq!(KeyStore::new([zero]).err(), Some(KeyStoreError::ZeroKeyId));
        assert!(!format!("{:?}", store().get(7)).contains("secret"));
    }
}
