//! The PII of inference events: opening envelopes sealed at the source (X25519 + HKDF-SHA256 +
//! AES-256-GCM, `lineage/pii/sealing.py` makes them), subject references (keyed HMAC-SHA256),
//! sealing snapshots and dead letters under data keys (AES-256-GCM), and dead-letter headers.
//! Byte-compatible with the Python side, which opens what this seals and seals what this opens.
use crate::decode::V;
use crate::value::{self, Refusal};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use x25519_dalek::{PublicKey, StaticSecret};

const PREFIX: &str = "ls1.";
const KID: usize = 8;
const EPK: usize = 32;
const NONCE: usize = 12;
const HEAD: usize = KID + EPK + NONCE;
const INFO: &[u8] = b"lineage seal v1";
const CACHE: usize = 4096;

/// Opens envelopes sealed for any of its private keys, with a bounded cache of session keys.
pub struct Unsealer {
    keys: HashMap<[u8; KID], (StaticSecret, [u8; 32])>,
    sessions: Mutex<(HashMap<[u8; KID + EPK], Aes256Gcm>, VecDeque<[u8; KID + EPK]>)>,
}

fn key_id(public: &[u8; 32]) -> [u8; KID] {
    let d = Sha256::digest(public);
    let mut k = [0u8; KID];
    k.copy_from_slice(&d[..KID]);
    k
}

/// `base64.urlsafe_b64decode` as Python does it without validation: characters outside the
/// alphabet are skipped; a data length one past a multiple of four, or missing padding, fails.
fn urlsafe_b64decode(text: &str) -> Option<Vec<u8>> {
    // The usual envelope is alphabet characters and trailing padding only: no filtering copy.
    let body = text.trim_end_matches('=');
    if body.bytes().all(|b| URL_ALPHABET[b as usize]) {
        return urlsafe_b64decode_clean(body.as_bytes(), text.len() - body.len());
    }
    let mut data = Vec::with_capacity(text.len());
    let mut pads = 0usize;
    for b in text.bytes() {
        match b {
            b'=' => pads += 1,
            _ if URL_ALPHABET[b as usize] && pads == 0 => data.push(b),
            _ => {}
        }
    }
    urlsafe_b64decode_clean(&data, pads)
}

/// Which bytes are in the base64url alphabet.
static URL_ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

/// Decodes alphabet characters only, ``pads`` padding characters having followed them.
fn urlsafe_b64decode_clean(data: &[u8], pads: usize) -> Option<Vec<u8>> {
    match data.len() % 4 {
        1 => return None,
        2 if pads < 2 => return None,
        3 if pads < 1 => return None,
        _ => {}
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(data).ok().or_else(|| {
        // Python ignores non-zero trailing bits; the strict engine does not.
        let cfg = base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
        base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, cfg).decode(data).ok()
    })
}

impl Unsealer {
    pub fn new(private_keys: Vec<[u8; 32]>) -> Self {
        let mut keys = HashMap::new();
        for raw in private_keys {
            let secret = StaticSecret::from(raw);
            let public = *PublicKey::from(&secret).as_bytes();
            keys.insert(key_id(&public), (secret, public));
        }
        Unsealer { keys, sessions: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    fn session(&self, kid: [u8; KID], epk: [u8; EPK]) -> Result<Aes256Gcm, Refusal> {
        let mut id = [0u8; KID + EPK];
        id[..KID].copy_from_slice(&kid);
        id[KID..].copy_from_slice(&epk);
        if let Some(s) = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).0.get(&id) {
            return Ok(s.clone());
        }
        let Some((secret, recipient)) = self.keys.get(&kid) else {
            let hex: String = kid.iter().map(|b| format!("{b:02x}")).collect();
            return Err(Refusal::new("seal_key_unknown", format!("sealed for key {hex}, which this pipeline does not hold")));
        };
        let shared = secret.diffie_hellman(&PublicKey::from(epk));
        if !shared.was_contributory() {
            return Err(Refusal::new("unsealable", "the envelope's ephemeral key is invalid"));
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&epk);
        salt[32..].copy_from_slice(recipient);
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes())
            .expand(INFO, &mut okm)
            .map_err(|_| Refusal::new("unsealable", "the envelope's ephemeral key is invalid"))?;
        let aead = Aes256Gcm::new_from_slice(&okm).map_err(|_| Refusal::new("unsealable", "bad session key"))?;
        let mut cache = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *cache;
        if map.insert(id, aead.clone()).is_none() {
            order.push_back(id);
            if order.len() > CACHE {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        Ok(aead)
    }

    /// The plaintext of an envelope sealed for `prediction_id`.
    pub fn open(&self, envelope: &str, prediction_id: &str) -> Result<Vec<u8>, Refusal> {
        let Some(body) = envelope.strip_prefix(PREFIX) else {
            return Err(Refusal::new("unsealable", "not a sealed envelope (expected 'ls1.' text)"));
        };
        let blob = urlsafe_b64decode(body).ok_or_else(|| Refusal::new("unsealable", "the envelope is not valid base64"))?;
        if blob.len() < HEAD + 16 {
            return Err(Refusal::new("unsealable", "the envelope is truncated"));
        }
        let kid: [u8; KID] = blob[..KID].try_into().unwrap_or([0; KID]);
        let epk: [u8; EPK] = blob[KID..KID + EPK].try_into().unwrap_or([0; EPK]);
        let aead = self.session(kid, epk)?;
        let aad = [b"lineage-pii|v1|".as_slice(), prediction_id.as_bytes()].concat();
        aead.decrypt(Nonce::from_slice(&blob[HEAD - NONCE..HEAD]), Payload { msg: &blob[HEAD..], aad: &aad })
            .map_err(|_| Refusal::new("unsealable", "the envelope failed authentication (tampered, or moved to another prediction)"))
    }

    /// `(subject id, snapshot)` of an envelope of the SDK's `seal_pii`, the snapshot in the Avro
    /// record's shape (feature values as JSON text when the document says they are typed).
    pub fn open_pii(&self, prediction_id: &str, envelope: &str) -> Result<(V, V), Refusal> {
        let plain = self.open(envelope, prediction_id)?;
        let bad = || Refusal::new("unsealable", "the sealed payload is not a subject/snapshot document");
        let doc = value::from_json(&plain).map_err(|_| bad())?;
        if !doc.is_object() {
            return Err(bad());
        }
        let typed = doc.get("j").is_some_and(V::truthy);
        let (Some(f), Some(s)) = (doc.get("f"), doc.get("s")) else {
            return Err(bad());
        };
        let snapshot = if typed { snapshot_record(f)? } else { f.dup() };
        Ok((s.dup(), snapshot))
    }
}

/// A typed snapshot in the Avro record's shape: every value JSON-encoded.
fn snapshot_record(snapshot: &V) -> Result<V, Refusal> {
    if snapshot.is_null() || !snapshot.is_object() {
        return Ok(snapshot.dup());
    }
    let values = match snapshot.get("values") {
        Some(vals) if vals.is_object() => {
            let mut out = Vec::new();
            for (k, v) in vals.entries() {
                let text = value::to_json(v).map_err(|_| Refusal::new("unsealable", "the sealed payload is not a subject/snapshot document"))?;
                out.push((k.to_string(), V::Str(String::from_utf8(text).unwrap_or_default())));
            }
            V::Map(out)
        }
        Some(other) => other.dup(),
        None => V::Null,
    };
    let fs = snapshot.get("feature_set").map(V::dup).unwrap_or(V::Null);
    Ok(V::obj([("values", values), ("feature_set", fs)]))
}

/// Keyed pseudonym of a subject id (128-bit hex); the id itself is never stored.
pub fn subject_ref(pseudonym_key: &[u8], subject_id: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(pseudonym_key) else {
        return String::new();
    };
    mac.update(subject_id.as_bytes());
    let d = mac.finalize().into_bytes();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn nonce() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    // The OS random source does not fail on Linux once booted; a failure would repeat no nonce
    // because the call aborts the seal below.
    if getrandom::getrandom(&mut n).is_err() {
        panic!("no random source for a nonce");
    }
    n
}

/// AES-256-GCM: (nonce, ciphertext+tag).
fn seal(dek: &[u8], plaintext: &[u8], aad: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let n = nonce();
    let cipher = Aes256Gcm::new_from_slice(dek).unwrap_or_else(|_| panic!("a data key is 32 bytes"));
    let ct = cipher
        .encrypt(Nonce::from_slice(&n), Payload { msg: plaintext, aad })
        .unwrap_or_else(|_| panic!("AES-GCM seal failed"));
    (n.to_vec(), ct)
}

/// One feature snapshot encrypted under the subject's data key: the sealed JSON document.
pub fn seal_snapshot(dek: &[u8], subject_ref: &str, prediction_id: &str, snapshot: &V) -> Vec<u8> {
    let plain = value::to_json_sorted(snapshot).unwrap_or_else(|_| b"null".to_vec());
    let (n, ct) = seal(dek, &plain, format!("snap|{subject_ref}|{prediction_id}").as_bytes());
    let b64 = &base64::engine::general_purpose::STANDARD;
    let doc = V::obj([
        ("v", V::Int(1)),
        ("alg", V::s("AES-256-GCM")),
        ("subject_ref", V::s(subject_ref)),
        ("prediction_id", V::s(prediction_id)),
        ("nonce", V::Str(b64.encode(n))),
        ("ct", V::Str(b64.encode(ct))),
    ]);
    value::to_json(&doc).unwrap_or_default()
}

/// A dead letter's value sealed under a data key: nonce || ciphertext, bound to where it came from.
pub fn seal_dead_letter(dek: &[u8], raw: &[u8], topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let (mut n, ct) = seal(dek, raw, format!("dlq|{topic}|{partition}|{offset}").as_bytes());
    n.extend_from_slice(&ct);
    n
}

/// The original headers (without `dlq.*`) followed by the dead letter's own.
#[allow(clippy::too_many_arguments)]
pub fn dead_letter_headers(
    original: &[(String, Option<Vec<u8>>)],
    reason: &str,
    detail: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    now_ms: i64,
    key_ref: &str,
    erased: bool,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = original
        .iter()
        .filter(|(k, _)| !k.starts_with("dlq."))
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    let cut: String = detail.chars().take(1000).collect();
    out.push(("dlq.reason".into(), reason.as_bytes().to_vec()));
    out.push(("dlq.detail".into(), cut.into_bytes()));
    out.push(("dlq.topic".into(), topic.as_bytes().to_vec()));
    out.push(("dlq.partition".into(), partition.to_string().into_bytes()));
    out.push(("dlq.offset".into(), offset.to_string().into_bytes()));
    out.push(("dlq.ts".into(), now_ms.to_string().into_bytes()));
    if !key_ref.is_empty() {
        out.push(("dlq.key".into(), key_ref.as_bytes().to_vec()));
        if erased {
            out.push(("dlq.erased".into(), b"1".to_vec()));
        } else {
            out.push(("dlq.sealed".into(), b"AES-256-GCM".to_vec()));
        }
    }
    out
}
