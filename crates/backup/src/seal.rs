//! The sealed object format: every file in the backup store is one.
//!
//! ```text
//! header  "RPSEAL01" | salt (32 random bytes)
//! frames  ( length: u32 big-endian | AES-256-GCM ciphertext and tag ) ...
//! ```
//!
//! The plaintext is cut into chunks of at most [`CHUNK`] bytes; each is deflated, and the
//! frame's plaintext is a flag byte (1 on the last frame, 0 before it) followed by the
//! deflated chunk. The key of an object is HKDF-SHA256 of the store key with the object's
//! salt, so no two objects share a key and a nonce; the nonce is the frame's index and the
//! header is the associated data. A flipped bit anywhere fails the frame's tag; a file
//! cut short ends without its last frame; frames swapped or repeated fail their nonce. All
//! of these are errors, never wrong data. The last frame may be empty (an empty object is
//! the header and one empty last frame).
//!
//! Cryptography is aws-lc-rs, the one crypto stack of the binary (rustls runs on it).

use std::io::{self, Read, Write};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;

/// The first bytes of every sealed object.
pub const MAGIC: &[u8; 8] = b"RPSEAL01";
/// Plaintext bytes per frame, at most.
pub const CHUNK: usize = 1 << 20;
const SALT_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + SALT_LEN;
const TAG_LEN: usize = 16;
/// A frame never holds more than this (deflate's worst case is a few bytes per 16 KiB).
const MAX_FRAME: usize = CHUNK + CHUNK / 8 + 1024;
const INFO: &[u8] = b"rampart-backup seal v1";

/// The store's key: 32 random bytes, kept in a 0600 file, never logged.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A new random key.
    pub fn generate() -> io::Result<Key> {
        let mut k = [0u8; 32];
        aws_lc_rs::rand::fill(&mut k).map_err(|_| io::Error::other("no randomness"))?;
        Ok(Key(k))
    }

    /// A key from its 32 bytes (as kept in the key file).
    pub fn from_bytes(bytes: &[u8]) -> Option<Key> {
        <[u8; 32]>::try_from(bytes).ok().map(Key)
    }

    /// The 32 bytes, for the key file.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn object_key(&self, salt: &[u8]) -> io::Result<LessSafeKey> {
        let prk = Salt::new(HKDF_SHA256, salt).extract(&self.0);
        let okm = prk
            .expand(&[INFO], &AES_256_GCM)
            .map_err(|_| io::Error::other("key derivation failed"))?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[NONCE_LEN - 8..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// What a sealed object holds: its size on disk, its SHA-256 and its plaintext size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub bytes: u64,
    pub sha256: String,
    pub plain_bytes: u64,
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seals what is written to it into `out`; [`Sealer::finish`] writes the last frame.
pub struct Sealer<W: Write> {
    out: W,
    key: LessSafeKey,
    header: [u8; HEADER_LEN],
    buf: Vec<u8>,
    index: u64,
    digest: Context,
    bytes: u64,
    plain_bytes: u64,
}

impl<W: Write> std::fmt::Debug for Sealer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("index", &self.index)
            .finish()
    }
}

impl<W: Write> Sealer<W> {
    /// Starts an object: writes its header.
    pub fn new(key: &Key, mut out: W) -> io::Result<Sealer<W>> {
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        aws_lc_rs::rand::fill(&mut header[MAGIC.len()..])
            .map_err(|_| io::Error::other("no randomness"))?;
        out.write_all(&header)?;
        let mut digest = Context::new(&SHA256);
        digest.update(&header);
        Ok(Sealer {
            key: key.object_key(&header[MAGIC.len()..])?,
            out,
            header,
            buf: Vec::with_capacity(CHUNK),
            index: 0,
            digest,
            bytes: HEADER_LEN as u64,
            plain_bytes: 0,
        })
    }

    fn frame(&mut self, last: bool) -> io::Result<()> {
        let mut z = DeflateEncoder::new(
            Vec::with_capacity(self.buf.len() / 2 + 64),
            Compression::new(3),
        );
        z.write_all(&[u8::from(last)])?;
        z.write_all(&self.buf)?;
        let mut data = z.finish()?;
        // The flag is the first plaintext byte, inside the deflate stream: authenticated.
        self.key
            .seal_in_place_append_tag(nonce(self.index), Aad::from(&self.header[..]), &mut data)
            .map_err(|_| io::Error::other("encryption failed"))?;
        let len = u32::try_from(data.len()).map_err(|_| io::Error::other("frame too large"))?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&data)?;
        self.digest.update(&len.to_be_bytes());
        self.digest.update(&data);
        self.bytes += 4 + data.len() as u64;
        self.index += 1;
        self.buf.clear();
        Ok(())
    }

    /// Writes the last frame and returns the writer and what was sealed.
    pub fn finish(mut self) -> io::Result<(W, Sealed)> {
        self.frame(true)?;
        self.out.flush()?;
        let sha256 = hex(self.digest.finish().as_ref());
        Ok((
            self.out,
            Sealed {
                bytes: self.bytes,
                sha256,
                plain_bytes: self.plain_bytes,
            },
        ))
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.plain_bytes += n as u64;
        if self.buf.len() == CHUNK {
            self.frame(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads the plaintext of a sealed object, failing on any damage.
pub struct Opener<R: Read> {
    input: R,
    key: LessSafeKey,
    header: [u8; HEADER_LEN],
    index: u64,
    plain: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> std::fmt::Debug for Opener<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("index", &self.index)
            .finish()
    }
}

fn damaged(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

impl<R: Read> Opener<R> {
    /// Reads and checks the header.
    pub fn new(key: &Key, mut input: R) -> io::Result<Opener<R>> {
        let mut header = [0u8; HEADER_LEN];
        input
            .read_exact(&mut header)
            .map_err(|_| damaged("shorter than a sealed object's header"))?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(damaged("not a sealed object (bad magic)"));
        }
        Ok(Opener {
            key: key.object_key(&header[MAGIC.len()..])?,
            input,
            header,
            index: 0,
            plain: Vec::new(),
            pos: 0,
            done: false,
        })
    }

    /// Reads the next frame into `plain`; `Ok(false)` after the last one.
    fn next_frame(&mut self) -> io::Result<bool> {
        if self.done {
            let mut extra = [0u8; 1];
            return match self.input.read(&mut extra)? {
                0 => Ok(false),
                _ => Err(damaged("bytes after the last frame")),
            };
        }
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|_| damaged("ends before its last frame (truncated)"))?;
        let len = u32::from_be_bytes(len) as usize;
        if !(TAG_LEN..=MAX_FRAME).contains(&len) {
            return Err(damaged("a frame length out of range"));
        }
        let mut data = vec![0u8; len];
        self.input
            .read_exact(&mut data)
            .map_err(|_| damaged("ends inside a frame (truncated)"))?;
        let plain = self
            .key
            .open_in_place(nonce(self.index), Aad::from(&self.header[..]), &mut data)
            .map_err(|_| damaged("a frame does not authenticate"))?;
        let mut z = DeflateDecoder::new(&plain[..]).take(CHUNK as u64 + 2);
        self.plain.clear();
        self.pos = 1;
        z.read_to_end(&mut self.plain)
            .map_err(|_| damaged("a frame does not inflate"))?;
        match self.plain.first() {
            Some(0) => {}
            Some(1) => self.done = true,
            _ => return Err(damaged("a frame without its flag")),
        }
        if self.plain.len() > CHUNK + 1 {
            return Err(damaged("a frame larger than a chunk"));
        }
        self.index += 1;
        Ok(true)
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.plain.len() {
            if !self.next_frame()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &Key, data: &[u8]) -> (Vec<u8>, Sealed) {
        let mut s = Sealer::new(key, Vec::new()).unwrap();
        s.write_all(data).unwrap();
        s.finish().unwrap()
    }

    fn open(key: &Key, sealed: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Opener::new(key, sealed)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        let key = Key::generate().unwrap();
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 5] {
            let data = sample(n);
            let (sealed, s) = seal(&key, &data);
            assert_eq!(open(&key, &sealed).unwrap(), data, "{n} bytes");
            assert_eq!(s.plain_bytes, n as u64);
            assert_eq!(s.bytes, sealed.len() as u64);
            let mut d = Context::new(&SHA256);
            d.update(&sealed);
            assert_eq!(s.sha256, hex(d.finish().as_ref()));
        }
    }

    #[test]
    fn compresses_and_hides_the_plaintext() {
        let key = Key::generate().unwrap();
        let data = b"alice@example.com,".repeat(10_000);
        let (sealed, _) = seal(&key, &data);
        assert!(sealed.len() < data.len() / 20, "{} bytes", sealed.len());
        assert!(!sealed.windows(17).any(|w| w == b"alice@example.com"));
        // Two objects of the same plaintext differ (each has its own salt and key).
        assert_ne!(seal(&key, &data).0, sealed);
    }

    #[test]
    fn any_damage_is_an_error_never_wrong_data() {
        let key = Key::generate().unwrap();
        let data = sample(2 * CHUNK + 100);
        let (sealed, _) = seal(&key, &data);
        // A flipped bit in the header, a length, a ciphertext, a tag.
        for at in [
            3,
            20,
            HEADER_LEN + 1,
            HEADER_LEN + 100,
            sealed.len() / 2,
            sealed.len() - 1,
        ] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x10;
            assert!(open(&key, &bad).is_err(), "flip at {at}");
        }
        // Cut short at a frame boundary: the last frame is missing.
        let first_len =
            u32::from_be_bytes(sealed[HEADER_LEN..HEADER_LEN + 4].try_into().unwrap()) as usize;
        let cut = &sealed[..HEADER_LEN + 4 + first_len];
        let err = open(&key, cut).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // Frames swapped.
        let second_at = HEADER_LEN + 4 + first_len;
        let second_len =
            u32::from_be_bytes(sealed[second_at..second_at + 4].try_into().unwrap()) as usize;
        let mut swapped = sealed[..HEADER_LEN].to_vec();
        swapped.extend_from_slice(&sealed[second_at..second_at + 4 + second_len]);
        swapped.extend_from_slice(&sealed[HEADER_LEN..second_at]);
        swapped.extend_from_slice(&sealed[second_at + 4 + second_len..]);
        assert!(open(&key, &swapped).is_err());
        // Bytes appended after the last frame.
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(open(&key, &longer).is_err());
        // Another key.
        assert!(open(&Key::generate().unwrap(), &sealed).is_err());
        // Not a sealed object at all.
        assert!(open(&key, b"hello").is_err());
    }
}
