//! Static files: conditional requests, precompressed variants, no way out of the root.
//!
//! [`StaticFiles`] answers GET and HEAD for the regular files under one directory. It is
//! written for untrusted request paths: the path is percent-decoded exactly once, anything
//! that could name a parent directory is refused before the filesystem is touched, and every
//! file is resolved with `canonicalize` and must still lie inside the canonical root.

use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use tokio::io::AsyncReadExt;

/// The largest file served. Responses are whole in-memory bodies (`Full<Bytes>`), so a
/// larger file is refused with 404 and a `warn!` that names it rather than streamed: the
/// static tree holds the site's CSS, images and fonts, and a file this size there is an
/// operator's mistake, not something to hold in memory once per request.
pub const MAX_FILE_SIZE: u64 = 32 * 1024 * 1024;

/// The file served for a request that names a directory.
const INDEX: &str = "index.html";

/// Serves the files under one directory.
///
/// Choices, in request order:
/// - Methods: GET and HEAD; anything else is 405 with `Allow: GET, HEAD`. HEAD gets the
///   headers GET would get (with `Content-Length`) and an empty body.
/// - Paths: the raw path must start with `/`. It is percent-decoded once; a malformed escape,
///   an encoded `/` (`%2F`), NUL or any other control character, a backslash, invalid UTF-8,
///   or a `.` or `..` segment is 400. `%252e` decodes to the literal name `%2e`, never to `.`.
///   Empty segments (`//`) are skipped. A segment starting with `.` (a hidden file or
///   directory, including `.well-known`) is 404.
/// - Directories: a path ending in `/`, or naming a directory, is answered with the
///   directory's `index.html` (without a redirect); without one it is 404, never a listing.
///   A path ending in `/` that names a file is 404.
/// - Symlinks are followed, but the resolved path must lie inside the canonical root and
///   have no hidden component; otherwise 404. Only regular files are served (a FIFO or a
///   device is 404), and files are opened non-blocking so a FIFO swapped in cannot hang a
///   thread.
/// - Precompressed variants: `<file>.br` and `<file>.gz` next to the resolved file, under the
///   same rules, and only when not older than the file itself (so an operator who edits
///   `site.css` and forgets `site.css.br` does not get the old CSS served to every browser).
///   Among the variants the client accepts (`Accept-Encoding` with q-values; `q=0` refuses,
///   `*` counts, `x-gzip` is `gzip`) the one with the highest q wins, `br` on a tie. The
///   response carries `Vary: Accept-Encoding` whenever the file has a usable variant, and
///   `Content-Type` of the original. A request naming `x.css.gz` itself gets that file as
///   `application/gzip` without `Content-Encoding`.
/// - Validators: `Last-Modified` is the served file's mtime (clamped to now), and the strong
///   `ETag` is `"<size>-<mtime ns>[-br|-gz]"` (hex) of the file actually served, so each
///   variant has its own.
/// - Conditional requests (RFC 9110 13.1): `If-None-Match` (`*` or a list, weak comparison)
///   takes precedence over `If-Modified-Since`, which is ignored when unparsable or repeated.
///   A match is 304 with `ETag`, `Last-Modified`, `Cache-Control` and `Vary`, no body and no
///   `Content-Length`.
/// - Ranges are not supported: `Accept-Ranges: none`, and `Range` is ignored (200).
/// - Every file response has `X-Content-Type-Options: nosniff`. Error responses have a short
///   `text/plain` body (empty for HEAD).
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// The canonical root: every served path starts with it.
    root: PathBuf,
    cache_control: HeaderValue,
}

impl StaticFiles {
    /// `root` must exist and be a directory; `cache_control` is sent as is in
    /// `Cache-Control` and must be a valid header value. Errors name the path.
    pub fn new(root: &Path, cache_control: &str) -> io::Result<Self> {
        let canonical = std::fs::canonicalize(root).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("static root {}: {error}", root.display()),
            )
        })?;
        let meta = std::fs::metadata(&canonical).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("static root {}: {error}", root.display()),
            )
        })?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("static root {}: not a directory", root.display()),
            ));
        }
        let cache_control = HeaderValue::from_str(cache_control).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "static root {}: invalid cache-control value",
                    root.display()
                ),
            )
        })?;
        Ok(Self {
            root: canonical,
            cache_control,
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers one request. `raw_path` is the request target's path as received (still
    /// percent-encoded, without the query). Never panics; see [`StaticFiles`] for the rules.
    pub async fn serve(
        &self,
        method: &Method,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Response<Full<Bytes>> {
        let head = if method == Method::HEAD {
            true
        } else if method == Method::GET {
            false
        } else {
            let mut response = status_response(StatusCode::METHOD_NOT_ALLOWED, false);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        };
        let request = match parse_path(raw_path) {
            Ok(request) => request,
            Err(status) => return status_response(status, head),
        };
        let Some((file, meta)) = self.resolve(&request).await else {
            return status_response(StatusCode::NOT_FOUND, head);
        };
        self.respond(&file, &meta, headers, head).await
    }

    /// The canonical path of the file a request names, with its metadata.
    async fn resolve(&self, request: &RequestPath) -> Option<(PathBuf, Metadata)> {
        let mut path = self.root.clone();
        path.extend(&request.segments);
        let canonical = self.inside(&path).await?;
        let meta = tokio::fs::metadata(&canonical).await.ok()?;
        if meta.is_dir() {
            let index = self.inside(&canonical.join(INDEX)).await?;
            let meta = tokio::fs::metadata(&index).await.ok()?;
            meta.is_file().then_some((index, meta))
        } else if meta.is_file() && !request.trailing_slash {
            Some((canonical, meta))
        } else {
            None
        }
    }

    /// `path` canonicalized, if that lies inside the root with no hidden component.
    async fn inside(&self, path: &Path) -> Option<PathBuf> {
        let canonical = tokio::fs::canonicalize(path).await.ok()?;
        let relative = canonical.strip_prefix(&self.root).ok()?;
        let visible = relative.components().all(|component| match component {
            Component::Normal(name) => !name.as_encoded_bytes().starts_with(b"."),
            _ => false,
        });
        visible.then_some(canonical)
    }

    /// The usable `<file><suffix>` variant of `file`: a regular file inside the root, not
    /// older than `file` and not over [`MAX_FILE_SIZE`].
    async fn variant(&self, file: &Path, meta: &Metadata, suffix: &str) -> Option<PathBuf> {
        let mut name = OsString::from(file.as_os_str());
        name.push(suffix);
        let canonical = self.inside(Path::new(&name)).await?;
        let variant = tokio::fs::metadata(&canonical).await.ok()?;
        if !variant.is_file() || variant.len() > MAX_FILE_SIZE {
            return None;
        }
        if let (Ok(source), Ok(compressed)) = (meta.modified(), variant.modified()) {
            if compressed < source {
                return None;
            }
        }
        Some(canonical)
    }

    async fn respond(
        &self,
        file: &Path,
        meta: &Metadata,
        headers: &HeaderMap,
        head: bool,
    ) -> Response<Full<Bytes>> {
        let br = self.variant(file, meta, ".br").await;
        let gz = self.variant(file, meta, ".gz").await;
        let has_variant = br.is_some() || gz.is_some();
        let (served, encoding) = match choose_encoding(headers, br.is_some(), gz.is_some()) {
            Some(Encoding::Br) => (br.as_deref().unwrap_or(file), Some(Encoding::Br)),
            Some(Encoding::Gzip) => (gz.as_deref().unwrap_or(file), Some(Encoding::Gzip)),
            None => (file, None),
        };

        let opened = match open(served).await {
            Ok(opened) => opened,
            Err(OpenError::NotServed) => return status_response(StatusCode::NOT_FOUND, head),
            Err(OpenError::TooLarge(size)) => {
                tracing::warn!(
                    path = %served.display(),
                    size,
                    limit = MAX_FILE_SIZE,
                    "static file too large to serve"
                );
                return status_response(StatusCode::NOT_FOUND, head);
            }
            Err(OpenError::Io(error)) => {
                tracing::warn!(path = %served.display(), %error, "static file unreadable");
                return status_response(StatusCode::INTERNAL_SERVER_ERROR, head);
            }
        };
        let size = opened.meta.len();
        let modified = opened.meta.modified().ok();
        let etag = entity_tag(size, modified, encoding);
        let last_modified = modified.map(|mtime| mtime.min(SystemTime::now()));

        let mut validators = HeaderMap::new();
        insert(&mut validators, header::ETAG, &etag);
        if let Some(mtime) = last_modified {
            insert(
                &mut validators,
                header::LAST_MODIFIED,
                &httpdate::fmt_http_date(mtime),
            );
        }
        validators.insert(header::CACHE_CONTROL, self.cache_control.clone());
        if has_variant {
            validators.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }

        if not_modified(headers, &etag, last_modified) {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            *response.headers_mut() = validators;
            return response;
        }

        let body = if head {
            Bytes::new()
        } else {
            match read_limited(opened.file).await {
                Ok(body) => Bytes::from(body),
                Err(error) => {
                    tracing::warn!(path = %served.display(), %error, "static file unreadable");
                    return status_response(StatusCode::INTERNAL_SERVER_ERROR, head);
                }
            }
        };
        // The body read may differ from the metadata's size if the file changed meanwhile;
        // the length sent is always that of the body sent.
        let length = if head { size } else { body.len() as u64 };

        let mut response = Response::new(Full::new(body));
        let out = response.headers_mut();
        *out = validators;
        out.insert(header::CONTENT_TYPE, content_type(file));
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
        out.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Some(encoding) = encoding {
            out.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding.token()),
            );
        }
        response
    }
}

/// A request path that passed the checks: decoded, non-empty segments.
#[derive(Debug, PartialEq)]
pub struct RequestPath {
    pub segments: Vec<String>,
    pub trailing_slash: bool,
}

/// Decodes and checks a raw request path; the error is the status to answer with.
/// Public for the static-path fuzz target.
pub fn parse_path(raw: &str) -> Result<RequestPath, StatusCode> {
    if !raw.starts_with('/') {
        return Err(StatusCode::BAD_REQUEST);
    }
    let decoded = percent_decode(raw).ok_or(StatusCode::BAD_REQUEST)?;
    if decoded
        .iter()
        .any(|&byte| byte == b'\\' || byte.is_ascii_control())
    {
        return Err(StatusCode::BAD_REQUEST);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| StatusCode::BAD_REQUEST)?;
    let segments: Vec<String> = decoded
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(str::to_owned)
        .collect();
    if segments
        .iter()
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(StatusCode::BAD_REQUEST);
    }
    if segments.iter().any(|segment| segment.starts_with('.')) {
        return Err(StatusCode::NOT_FOUND);
    }
    Ok(RequestPath {
        trailing_slash: decoded.ends_with('/'),
        segments,
    })
}

/// Percent-decodes once. `None` for a malformed escape or an encoded `/`.
fn percent_decode(raw: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            let high = hex(bytes.next()?)?;
            let low = hex(bytes.next()?)?;
            let decoded = (high << 4) | low;
            if decoded == b'/' {
                return None;
            }
            out.push(decoded);
        } else {
            out.push(byte);
        }
    }
    Some(out)
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// A content coding of a precompressed variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Br,
    Gzip,
}

impl Encoding {
    fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// The variant to serve: among those that exist and that `Accept-Encoding` accepts with
/// q > 0, the highest q, `br` on a tie. `None` means identity.
fn choose_encoding(headers: &HeaderMap, br: bool, gzip: bool) -> Option<Encoding> {
    if !br && !gzip {
        return None;
    }
    let (q_br, q_gzip) = accept_encoding(headers);
    let q_br = if br { q_br } else { 0 };
    let q_gzip = if gzip { q_gzip } else { 0 };
    if q_br > 0 && q_br >= q_gzip {
        Some(Encoding::Br)
    } else if q_gzip > 0 {
        Some(Encoding::Gzip)
    } else {
        None
    }
}

/// The q-values (in thousandths) that `Accept-Encoding` gives `br` and `gzip`: the coding's
/// own entry if any, else `*`'s, else 0. Elements with a malformed q-value are ignored, and
/// so are header values that are not visible ASCII.
fn accept_encoding(headers: &HeaderMap) -> (u16, u16) {
    let (mut br, mut gzip, mut star) = (None, None, None);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for element in value.split(',') {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or("").trim();
            if coding.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for param in parts {
                if let Some((name, value)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        q = parse_qvalue(value.trim());
                    }
                }
            }
            let Some(q) = q else {
                continue;
            };
            let slot = if coding.eq_ignore_ascii_case("br") {
                &mut br
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                &mut gzip
            } else if coding == "*" {
                &mut star
            } else {
                continue;
            };
            // A coding listed twice keeps its best q.
            *slot = Some(slot.map_or(q, |old: u16| old.max(q)));
        }
    }
    (br.or(star).unwrap_or(0), gzip.or(star).unwrap_or(0))
}

/// An RFC 9110 qvalue in thousandths: `0`, `0.5`, `0.125`, `1`, `1.000`.
fn parse_qvalue(value: &str) -> Option<u16> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if frac.len() > 3 || !frac.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for index in 0..3 {
        let digit = frac.as_bytes().get(index).map_or(0, |byte| byte - b'0');
        thousandths = thousandths * 10 + u16::from(digit);
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The strong entity tag of the file served: size and mtime in nanoseconds, in hex, with the
/// content coding so that each variant's tag differs even if sizes and times coincide.
fn entity_tag(size: u64, modified: Option<SystemTime>, encoding: Option<Encoding>) -> String {
    let nanos = modified
        .and_then(|mtime| mtime.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    let suffix = match encoding {
        None => "",
        Some(Encoding::Br) => "-br",
        Some(Encoding::Gzip) => "-gz",
    };
    format!("\"{size:x}-{nanos:x}{suffix}\"")
}

/// RFC 9110 13.2.2 for GET and HEAD: `If-None-Match` decides when present; otherwise a
/// single valid `If-Modified-Since` not earlier than `Last-Modified` (to the second) does.
fn not_modified(headers: &HeaderMap, etag: &str, last_modified: Option<SystemTime>) -> bool {
    let mut if_none_match = headers.get_all(header::IF_NONE_MATCH).iter().peekable();
    if if_none_match.peek().is_some() {
        return if_none_match.any(|value| {
            value
                .to_str()
                .is_ok_and(|value| etag_list_matches(value, etag))
        });
    }
    let mut since = headers.get_all(header::IF_MODIFIED_SINCE).iter();
    let (Some(since), None) = (since.next(), since.next()) else {
        return false;
    };
    let Some(since) = since
        .to_str()
        .ok()
        .and_then(|value| httpdate::parse_http_date(value.trim()).ok())
    else {
        return false;
    };
    let seconds = |time: SystemTime| time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
    match (last_modified.and_then(seconds), seconds(since)) {
        (Some(modified), Some(since)) => modified <= since,
        _ => false,
    }
}

/// Whether an `If-None-Match` value (`*` or a list of entity tags) matches `etag` under weak
/// comparison. A malformed list matches only through the tags before the malformation.
fn etag_list_matches(value: &str, etag: &str) -> bool {
    let value = value.trim();
    if value == "*" {
        return true;
    }
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        let Some((opaque, after)) = tag.strip_prefix('"').and_then(|tag| tag.split_once('"'))
        else {
            return false;
        };
        if etag
            .strip_prefix('"')
            .and_then(|etag| etag.strip_suffix('"'))
            == Some(opaque)
        {
            return true;
        }
        rest = after;
    }
}

/// The media type for a file name's extension (case-insensitive); text types are UTF-8.
fn content_type(path: &Path) -> HeaderValue {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    HeaderValue::from_static(match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    })
}

struct Opened {
    file: tokio::fs::File,
    meta: Metadata,
}

enum OpenError {
    /// Gone, not permitted, or not a regular file: answered as 404.
    NotServed,
    TooLarge(u64),
    Io(io::Error),
}

/// Opens a resolved file and takes its metadata from the handle, so the validators describe
/// the file actually read. Non-blocking so that a FIFO cannot hang the open.
async fn open(path: &Path) -> Result<Opened, OpenError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    options.custom_flags(libc::O_NONBLOCK);
    let file = options
        .open(path)
        .await
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => OpenError::NotServed,
            _ => OpenError::Io(error),
        })?;
    let meta = file.metadata().await.map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotServed);
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(OpenError::TooLarge(meta.len()));
    }
    Ok(Opened { file, meta })
}

/// Reads a whole file, refusing to hold more than [`MAX_FILE_SIZE`] bytes even if it grew.
async fn read_limited(file: tokio::fs::File) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut body).await?;
    if body.len() as u64 > MAX_FILE_SIZE {
        return Err(io::Error::other("file grew past the size limit while read"));
    }
    Ok(body)
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// An error response with a short plain-text body (none for HEAD).
fn status_response(status: StatusCode, head: bool) -> Response<Full<Bytes>> {
    let text = format!(
        "{}\n",
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    );
    let length = text.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(text)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::fs;
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;

    const CSS: &[u8] = b"body { color: red }\n";
    const CSS_GZ: &[u8] = b"pretend gzip";
    const CSS_BR: &[u8] = b"pretend brotli!";

    /// A root with files of every kind the cases need, and a secret outside it.
    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        files: StaticFiles,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        for sub in ["docs", "empty", "a", ".git", "nested/deeper"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        fs::create_dir_all(&outside).unwrap();
        let files: &[(&str, &[u8])] = &[
            ("index.html", b"<!doctype html><title>home</title>\n"),
            ("site.css", CSS),
            ("plain.txt", b"hello\n"),
            ("docs/index.html", b"<p>docs</p>\n"),
            ("nested/deeper/index.html", b"<p>deeper</p>\n"),
            ("a/b", b"b\n"),
            (".hidden", b"secret\n"),
            (".git/config", b"[core]\n"),
            ("%2e%2e", b"a file literally named %2e%2e\n"),
            ("x.css.gz", b"\x1f\x8bnot really"),
            ("logo.SVG", b"<svg/>"),
            ("data.bin", b"\x00\x01"),
            ("stale.css", b"new contents\n"),
            ("stale.css.br", b"old brotli"),
        ];
        for (name, contents) in files {
            fs::write(root.join(name), contents).unwrap();
        }
        // Variants written after their source, as `site::install_default` does.
        fs::write(root.join("site.css.gz"), CSS_GZ).unwrap();
        fs::write(root.join("site.css.br"), CSS_BR).unwrap();
        // An operator edited stale.css after its variant was made.
        let later = SystemTime::now() + Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(root.join("stale.css"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        fs::write(outside.join("secret.txt"), b"outside\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(outside.join("secret.txt"), root.join("link-out")).unwrap();
            symlink(&outside, root.join("dir-link-out")).unwrap();
            symlink(root.join("plain.txt"), root.join("link-in")).unwrap();
            symlink("docs", root.join("dir-link-in")).unwrap();
            symlink(".hidden", root.join("link-hidden")).unwrap();
            symlink("nowhere", root.join("dangling")).unwrap();
        }
        let files = StaticFiles::new(&root, "public, max-age=3600").unwrap();
        Fixture {
            _dir: dir,
            root,
            files,
        }
    }

    async fn request(
        fx: &Fixture,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response<Full<Bytes>> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        fx.files.serve(&method, path, &map).await
    }

    async fn get(fx: &Fixture, path: &str, headers: &[(&str, &str)]) -> Response<Full<Bytes>> {
        request(fx, Method::GET, path, headers).await
    }

    async fn body(response: Response<Full<Bytes>>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    fn header<'a>(response: &'a Response<Full<Bytes>>, name: &str) -> Option<&'a str> {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap())
    }

    async fn check(fx: &Fixture, path: &str, expected: u16) {
        let response = get(fx, path, &[]).await;
        assert_eq!(response.status().as_u16(), expected, "GET {path}");
    }

    #[tokio::test]
    async fn paths() {
        let fx = fixture();
        let cases: &[(&str, u16)] = &[
            // Served.
            ("/site.css", 200),
            ("/plain.txt", 200),
            ("/", 200),
            ("/docs/", 200),
            ("/docs", 200),
            ("/docs/index.html", 200),
            ("/nested/deeper/", 200),
            ("//plain.txt", 200),
            ("/docs//index.html", 200),
            ("/pl%61in.txt", 200),
            ("/x.css.gz", 200),
            // Decoded once: this is the file literally named `%2e%2e`, not a parent.
            ("/%252e%252e", 200),
            ("/%252e%252e/etc/passwd", 404),
            // Traversal and malformed paths.
            ("/../etc/passwd", 400),
            ("/..", 400),
            ("/.", 400),
            ("/./plain.txt", 400),
            ("/docs/../plain.txt", 400),
            ("/%2e%2e/%2e%2e/etc/passwd", 400),
            ("/%2e%2e%2fetc%2fpasswd", 400),
            ("/%2E%2E%2Fetc%2Fpasswd", 400),
            ("/a/%2E%2E/b", 400),
            ("/a/%2e/b", 400),
            ("/docs%2findex.html", 400),
            ("/%00", 400),
            ("/x%00.css", 400),
            ("/plain.txt%0a", 400),
            ("/..%5c..%5cwin.ini", 400),
            ("/a\\b", 400),
            ("/%zz", 400),
            ("/%", 400),
            ("/%2", 400),
            ("/%ff", 400),
            ("/%c3%28", 400),
            ("plain.txt", 400),
            ("", 400),
            ("*", 400),
            // Hidden files and directories.
            ("/.hidden", 404),
            ("/.git/config", 404),
            ("/%2ehidden", 404),
            ("/.well-known/x", 404),
            // Not there, or not a file.
            ("/missing.css", 404),
            ("/empty/", 404),
            ("/empty", 404),
            ("/plain.txt/", 404),
            ("/plain.txt/x", 404),
            ("/a/b", 200),
            // Symlinks.
            ("/link-in", 200),
            ("/dir-link-in/", 200),
            ("/link-out", 404),
            ("/dir-link-out/secret.txt", 404),
            ("/link-hidden", 404),
            ("/dangling", 404),
        ];
        for &(path, status) in cases {
            check(&fx, path, status).await;
        }
    }

    #[tokio::test]
    async fn serves_file_with_headers() {
        let fx = fixture();
        let response = get(&fx, "/site.css", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "content-type"),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(header(&response, "content-length"), Some("20"));
        assert_eq!(
            header(&response, "cache-control"),
            Some("public, max-age=3600")
        );
        assert_eq!(header(&response, "accept-ranges"), Some("none"));
        assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&response, "content-encoding"), None);
        let etag = header(&response, "etag").unwrap();
        assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));
        let modified = header(&response, "last-modified").unwrap();
        assert!(httpdate::parse_http_date(modified).is_ok(), "{modified}");
        assert_eq!(body(response).await, CSS);
    }

    #[tokio::test]
    async fn head_has_headers_and_no_body() {
        let fx = fixture();
        let got = get(&fx, "/site.css", &[]).await;
        let head = request(&fx, Method::HEAD, "/site.css", &[]).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers(), got.headers());
        assert!(body(head).await.is_empty());
        let missing = request(&fx, Method::HEAD, "/missing", &[]).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(body(missing).await.is_empty());
    }

    #[tokio::test]
    async fn other_methods_are_405() {
        let fx = fixture();
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let response = request(&fx, method.clone(), "/site.css", &[]).await;
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
            assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
        }
    }

    #[tokio::test]
    async fn content_types() {
        let fx = fixture();
        let cases = [
            ("/plain.txt", "text/plain; charset=utf-8"),
            ("/", "text/html; charset=utf-8"),
            ("/x.css.gz", "application/gzip"),
            ("/logo.SVG", "image/svg+xml"),
            ("/data.bin", "application/octet-stream"),
            ("/a/b", "application/octet-stream"),
        ];
        for (path, expected) in cases {
            let response = get(&fx, path, &[("accept-encoding", "gzip, br")]).await;
            assert_eq!(header(&response, "content-type"), Some(expected), "{path}");
            assert_eq!(header(&response, "content-encoding"), None, "{path}");
        }
        let by_name = |name: &str| content_type(Path::new(name));
        assert_eq!(by_name("a.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(by_name("a.woff2"), "font/woff2");
        assert_eq!(by_name("a.webmanifest"), "application/manifest+json");
        assert_eq!(by_name("a.wasm"), "application/wasm");
        assert_eq!(by_name("a.JPEG"), "image/jpeg");
        assert_eq!(by_name("a.ico"), "image/x-icon");
    }

    #[tokio::test]
    async fn if_none_match() {
        let fx = fixture();
        let first = get(&fx, "/site.css", &[]).await;
        let etag = header(&first, "etag").unwrap().to_owned();
        let modified = header(&first, "last-modified").unwrap().to_owned();
        let weak = format!("W/{etag}");
        let list = format!("\"nope\", {etag}");
        let list_weak = format!("\"a,b\",W/{etag} ");
        let cases: &[(&str, u16)] = &[
            (&etag, 304),
            (&weak, 304),
            (&list, 304),
            (&list_weak, 304),
            ("*", 304),
            ("\"nope\"", 200),
            ("\"nope\", W/\"other\"", 200),
            ("garbage", 200),
            ("", 200),
        ];
        for &(value, status) in cases {
            let response = get(&fx, "/site.css", &[("if-none-match", value)]).await;
            assert_eq!(response.status().as_u16(), status, "If-None-Match: {value}");
            if status == 304 {
                assert_eq!(header(&response, "etag"), Some(etag.as_str()));
                assert_eq!(header(&response, "last-modified"), Some(modified.as_str()));
                assert_eq!(
                    header(&response, "cache-control"),
                    Some("public, max-age=3600")
                );
                assert_eq!(header(&response, "vary"), Some("Accept-Encoding"));
                assert_eq!(header(&response, "content-length"), None);
                assert!(body(response).await.is_empty());
            }
        }
        // If-None-Match takes precedence: no match means 200 even if If-Modified-Since would
        // have matched, and a match means 304 even if it would not have.
        let response = get(
            &fx,
            "/site.css",
            &[
                ("if-none-match", "\"nope\""),
                ("if-modified-since", &modified),
            ],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = get(
            &fx,
            "/site.css",
            &[
                ("if-none-match", &etag),
                ("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ],
        )
        .await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        // Two header lines are one list.
        let response = get(
            &fx,
            "/site.css",
            &[("if-none-match", "\"nope\""), ("if-none-match", &etag)],
        )
        .await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        // HEAD too.
        let response = request(&fx, Method::HEAD, "/site.css", &[("if-none-match", &etag)]).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn if_modified_since() {
        let fx = fixture();
        let first = get(&fx, "/plain.txt", &[]).await;
        let modified = header(&first, "last-modified").unwrap().to_owned();
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
        let cases: &[(&str, u16)] = &[
            (&modified, 304),
            (&later, 304),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 200),
            ("yesterday", 200),
            ("", 200),
        ];
        for &(value, status) in cases {
            let response = get(&fx, "/plain.txt", &[("if-modified-since", value)]).await;
            assert_eq!(
                response.status().as_u16(),
                status,
                "If-Modified-Since: {value}"
            );
            if status == 304 {
                assert_eq!(header(&response, "content-length"), None);
                assert_eq!(header(&response, "vary"), None);
            }
        }
        // Repeated, it is ignored.
        let response = get(
            &fx,
            "/plain.txt",
            &[
                ("if-modified-since", &modified),
                ("if-modified-since", &modified),
            ],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn changed_file_is_200_again() {
        let fx = fixture();
        let path = fx.root.join("plain.txt");
        let set_modified = |time: SystemTime| {
            let file = fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(time).unwrap();
        };
        set_modified(SystemTime::now() - Duration::from_secs(60));
        let first = get(&fx, "/plain.txt", &[]).await;
        let etag = header(&first, "etag").unwrap().to_owned();
        let modified = header(&first, "last-modified").unwrap().to_owned();
        fs::write(&path, b"hello, changed\n").unwrap();
        set_modified(SystemTime::now());
        let response = get(&fx, "/plain.txt", &[("if-none-match", &etag)]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_ne!(header(&response, "etag"), Some(etag.as_str()));
        assert_eq!(body(response).await, &b"hello, changed\n"[..]);
        let response = get(&fx, "/plain.txt", &[("if-modified-since", &modified)]).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn negotiates_precompressed_variants() {
        let fx = fixture();
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (None, None),
            (Some(""), None),
            (Some("identity"), None),
            (Some("gzip"), Some("gzip")),
            (Some("x-gzip"), Some("gzip")),
            (Some("GZIP"), Some("gzip")),
            (Some("br"), Some("br")),
            (Some("gzip, deflate, br"), Some("br")),
            (Some("gzip, deflate, br, zstd"), Some("br")),
            (Some("br;q=0, gzip"), Some("gzip")),
            (Some("br; q=0.0, gzip"), Some("gzip")),
            (Some("br;q=0.000, gzip;q=0"), None),
            (Some("br;q=0.5, gzip"), Some("gzip")),
            (Some("br;q=0.5, gzip;q=0.5"), Some("br")),
            (Some("br;q=1.0, gzip;q=0.9"), Some("br")),
            (Some("*"), Some("br")),
            (Some("*;q=0"), None),
            (Some("*, br;q=0"), Some("gzip")),
            (Some("*;q=0, gzip"), Some("gzip")),
            (Some("br;q=2, gzip"), Some("gzip")),
            (Some("br;q=abc"), None),
            (Some("deflate"), None),
        ];
        for &(accept, expected) in cases {
            let headers: Vec<(&str, &str)> =
                accept.map(|a| ("accept-encoding", a)).into_iter().collect();
            let response = get(&fx, "/site.css", &headers).await;
            assert_eq!(response.status(), StatusCode::OK, "{accept:?}");
            assert_eq!(
                header(&response, "content-encoding"),
                expected,
                "Accept-Encoding: {accept:?}"
            );
            assert_eq!(header(&response, "vary"), Some("Accept-Encoding"));
            assert_eq!(
                header(&response, "content-type"),
                Some("text/css; charset=utf-8")
            );
            let expected_body = match expected {
                Some("br") => CSS_BR,
                Some("gzip") => CSS_GZ,
                _ => CSS,
            };
            let length = expected_body.len().to_string();
            assert_eq!(header(&response, "content-length"), Some(length.as_str()));
            assert_eq!(body(response).await, expected_body, "{accept:?}");
        }
        // A file without variants has no Vary.
        let response = get(&fx, "/plain.txt", &[("accept-encoding", "br, gzip")]).await;
        assert_eq!(header(&response, "vary"), None);
        assert_eq!(header(&response, "content-encoding"), None);
    }

    #[tokio::test]
    async fn each_variant_has_its_own_etag() {
        let fx = fixture();
        let mut tags = Vec::new();
        for accept in ["identity", "gzip", "br"] {
            let response = get(&fx, "/site.css", &[("accept-encoding", accept)]).await;
            tags.push(header(&response, "etag").unwrap().to_owned());
        }
        assert_ne!(tags[0], tags[1]);
        assert_ne!(tags[0], tags[2]);
        assert_ne!(tags[1], tags[2]);
        // A validator of one variant does not validate another.
        let response = get(
            &fx,
            "/site.css",
            &[("accept-encoding", "br"), ("if-none-match", &tags[0])],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = get(
            &fx,
            "/site.css",
            &[("accept-encoding", "br"), ("if-none-match", &tags[2])],
        )
        .await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&response, "vary"), Some("Accept-Encoding"));
    }

    #[tokio::test]
    async fn variant_older_than_its_file_is_ignored() {
        let fx = fixture();
        let response = get(&fx, "/stale.css", &[("accept-encoding", "br")]).await;
        assert_eq!(header(&response, "content-encoding"), None);
        assert_eq!(header(&response, "vary"), None);
        assert_eq!(body(response).await, &b"new contents\n"[..]);
    }

    #[tokio::test]
    async fn variant_outside_root_is_ignored() {
        let fx = fixture();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            fx.root.join("../outside/secret.txt"),
            fx.root.join("plain.txt.br"),
        )
        .unwrap();
        let response = get(&fx, "/plain.txt", &[("accept-encoding", "br")]).await;
        assert_eq!(header(&response, "content-encoding"), None);
        assert_eq!(body(response).await, &b"hello\n"[..]);
    }

    #[tokio::test]
    async fn too_large_file_is_404() {
        let fx = fixture();
        let file = fs::File::create(fx.root.join("huge.bin")).unwrap();
        file.set_len(MAX_FILE_SIZE + 1).unwrap();
        check(&fx, "/huge.bin", 404).await;
        file.set_len(MAX_FILE_SIZE).unwrap();
        let response = request(&fx, Method::HEAD, "/huge.bin", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn fifo_is_404() {
        let fx = fixture();
        let made = std::process::Command::new("mkfifo")
            .arg(fx.root.join("pipe"))
            .status();
        if !made.is_ok_and(|status| status.success()) {
            eprintln!("skipped: mkfifo unavailable");
            return;
        }
        check(&fx, "/pipe", 404).await;
    }

    #[test]
    fn new_requires_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let error = StaticFiles::new(&missing, "no-cache").unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let error = StaticFiles::new(&file, "no-cache").unwrap_err();
        assert!(error.to_string().contains("not a directory"), "{error}");
        assert!(error.to_string().contains("file"), "{error}");
        assert!(StaticFiles::new(dir.path(), "bad\nvalue").is_err());
        assert!(StaticFiles::new(dir.path(), "no-cache").is_ok());
    }

    #[test]
    fn qvalues() {
        let cases = [
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.125", Some(125)),
            ("0.1234", None),
            ("2", None),
            ("-1", None),
            ("", None),
            (".5", None),
            ("0.x", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_qvalue(value), expected, "q={value}");
        }
    }
}
