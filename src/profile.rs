//! Profiles: an identity that lasts (`--profile NAME`).
//!
//! Without a profile a node is ephemeral, as the original chat promised: its keys are made
//! at start and nothing is stored. With `--profile NAME` it keeps, in
//! `DATA_DIR/profiles/NAME/` (a directory only its owner may enter, 0700):
//!
//! - `identity.key`: the libp2p identity (Ed25519), after a format line
//!   (`noctua identity key v1 ed25519`), so that a foreign file is recognised;
//! - `profile.toml`: format version, the connection secret, the port of the last run;
//! - `peers.toml`: the known peers that last ([`crate::trust`]) or that were blocked;
//! - `lock`: held (flock) while a node uses the profile, so a second one is refused.
//!
//! Files are 0600 and written atomically (a temporary file, fsync, rename, fsync of the
//! directory). A file that group or other users may read or write, or that belongs to
//! another user, is refused with a one-line reason naming it and the fix; a corrupt or
//! foreign file is refused with its name and line. Nothing is written when a file failed
//! to load (the node does not start). Messages are never written.
//!
//! `DATA_DIR` is `--data-dir`, else `$XDG_DATA_HOME/noctua`, else
//! `~/.local/share/noctua` (`~/Library/Application Support/noctua` on macOS).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use noctua_chat::{Secret, SecretError};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::trust::{KnownPeer, KnownPeers, TrustError};

/// The identity file's first line.
const KEY_MARKER: &str = "noctua identity key v1 ed25519";
/// The format version of `profile.toml` and `peers.toml`.
const FORMAT: u32 = 1;
/// Largest profile file read (peers.toml with 1024 peers stays well under it).
const MAX_FILE: u64 = 4 << 20;
/// Longest profile name.
pub const MAX_NAME: usize = 64;

/// The files of a profile.
const IDENTITY_FILE: &str = "identity.key";
const PROFILE_FILE: &str = "profile.toml";
const PEERS_FILE: &str = "peers.toml";
const LOCK_FILE: &str = "lock";

/// Why a profile cannot be used. `Display` is one line naming the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The profile name is not 1-64 of `[A-Za-z0-9._-]` not starting with `.`.
    #[error(
        "invalid --profile {0:?}: use 1 to {MAX_NAME} letters, digits, '.', '_' or '-', not \
         starting with '.'"
    )]
    BadName(String),
    /// No data directory: neither `--data-dir`, `XDG_DATA_HOME` nor `HOME`.
    #[error("no data directory for profiles: set HOME or give --data-dir DIR")]
    NoDataDir,
    /// A file or directory cannot be read, created or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// Group or other users may read or write a file.
    #[error("{path} can be read or written by other users (mode {mode:03o}): run chmod 600 {path}")]
    FileMode {
        /// The path.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Group or other users may enter the profile's directory.
    #[error("{path} is open to other users (mode {mode:03o}): run chmod 700 {path}")]
    DirMode {
        /// The path.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Another user owns a file or the directory.
    #[error("{path} belongs to another user (uid {uid}, we are {us}): use your own profile")]
    Owner {
        /// The path.
        path: String,
        /// Its owner.
        uid: u32,
        /// Our effective user id.
        us: u32,
    },
    /// A symbolic link where a profile file should be.
    #[error("{path} is a symbolic link: a profile file must be a plain file")]
    Symlink {
        /// The path.
        path: String,
    },
    /// A file is not what it should be (corrupt, foreign, or a newer format).
    #[error("{path} line {line}: {why}")]
    Corrupt {
        /// The path.
        path: String,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The identity key is gone but the rest of the profile is there.
    #[error(
        "{path} is missing but the profile exists: its identity cannot be recovered; restore \
         the file, or use another --profile name"
    )]
    KeyMissing {
        /// The path.
        path: String,
    },
    /// Another noctua holds the profile.
    #[error("profile {name:?} is in use by another noctua (lock {path})")]
    InUse {
        /// The profile's name.
        name: String,
        /// The lock file.
        path: String,
    },
    /// Too many known peers to save.
    #[error("{path}: {source}")]
    Trust {
        /// The path.
        path: String,
        /// Why.
        source: TrustError,
    },
}

/// What to do with the stored connection secret when opening a profile.
#[derive(Debug, Clone, Default)]
pub enum SecretChoice {
    /// Keep it (first run: generate one).
    #[default]
    Keep,
    /// Replace it with a generated one (`--new-secret`).
    New,
    /// Use this one (`--secret`/`--secret-file`), and store it.
    Given(Secret),
}

/// An open profile: its identity, secret, port and known peers, and the lock that keeps
/// other nodes off it while it lives.
pub struct Profile {
    name: String,
    dir: PathBuf,
    identity: Keypair,
    secret: Secret,
    port: Option<u16>,
    peers: KnownPeers,
    created: bool,
    secret_changed: bool,
    #[cfg(unix)]
    _lock: nix::fcntl::Flock<File>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("peer", &self.identity.public().to_peer_id())
            .field("port", &self.port)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

/// Checks a profile name: 1-64 of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn check_name(name: &str) -> Result<(), ProfileError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ProfileError::BadName(name.to_string()))
    }
}

/// The data directory: `explicit` (`--data-dir`) if given, else the platform's.
pub fn data_dir(explicit: Option<&Path>) -> Result<PathBuf, ProfileError> {
    if let Some(d) = explicit {
        return Ok(d.to_path_buf());
    }
    let env_dir = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if !cfg!(target_os = "macos")
        && let Some(x) = env_dir("XDG_DATA_HOME")
    {
        return Ok(x.join("noctua"));
    }
    let home = env_dir("HOME").ok_or(ProfileError::NoDataDir)?;
    if cfg!(target_os = "macos") {
        Ok(home.join("Library/Application Support/noctua"))
    } else {
        Ok(home.join(".local/share/noctua"))
    }
}

impl Profile {
    /// Opens (or, the first time, creates) profile `name` under `data_dir`, takes its
    /// lock, and loads its files; `secret` says what becomes of the stored secret.
    pub fn open(data_dir: &Path, name: &str, secret: SecretChoice) -> Result<Self, ProfileError> {
        check_name(name)?;
        let dir = data_dir.join("profiles").join(name);
        create_private_dir(&dir)?;
        check_dir(&dir)?;
        #[cfg(unix)]
        let lock = take_lock(&dir, name)?;

        let key_path = dir.join(IDENTITY_FILE);
        let profile_path = dir.join(PROFILE_FILE);
        let key_text = read_private(&key_path)?;
        let profile_text = read_private(&profile_path)?;
        let peers_text = read_private(&dir.join(PEERS_FILE))?;

        // Load everything first: nothing is written unless all of it loaded.
        let identity = match &key_text {
            Some(t) => Some(parse_identity(&key_path, t)?),
            None if profile_text.is_some() => {
                return Err(ProfileError::KeyMissing {
                    path: shown(&key_path),
                });
            }
            None => None,
        };
        let stored = match &profile_text {
            Some(t) => Some(parse_profile(&profile_path, t)?),
            None => None,
        };
        let peers = match &peers_text {
            Some(t) => parse_peers(&dir.join(PEERS_FILE), t)?,
            None => KnownPeers::new(),
        };

        let created = identity.is_none();
        let identity = match identity {
            Some(k) => k,
            None => {
                let k = Keypair::generate_ed25519();
                write_atomic(&key_path, format_identity(&k)?.as_bytes())?;
                k
            }
        };
        let (old_secret, port) = match stored {
            Some((s, p)) => (Some(s), p),
            None => (None, None),
        };
        let new_secret = match (secret, &old_secret) {
            (SecretChoice::Keep, Some(s)) => s.clone(),
            (SecretChoice::Keep, None) | (SecretChoice::New, _) => Secret::generate(),
            (SecretChoice::Given(s), _) => s,
        };
        let secret_changed = old_secret
            .as_ref()
            .is_some_and(|o| o.expose() != new_secret.expose());
        let profile = Profile {
            name: name.to_string(),
            dir,
            identity,
            secret: new_secret,
            port,
            peers,
            created,
            secret_changed,
            #[cfg(unix)]
            _lock: lock,
        };
        if old_secret.is_none() || secret_changed {
            profile.write_profile()?;
        }
        Ok(profile)
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory (`DATA_DIR/profiles/NAME`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lasting libp2p identity.
    pub fn identity(&self) -> &Keypair {
        &self.identity
    }

    /// Our PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.identity.public().to_peer_id()
    }

    /// The connection secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The port of the last run, if one was stored.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The known peers as loaded.
    pub fn peers(&self) -> &KnownPeers {
        &self.peers
    }

    /// Whether this run created the profile.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether this run replaced the stored secret (old connection strings stop working).
    pub fn secret_changed(&self) -> bool {
        self.secret_changed
    }

    /// Stores a new connection secret.
    pub fn save_secret(&mut self, secret: &Secret) -> Result<(), ProfileError> {
        self.secret = secret.clone();
        self.write_profile()
    }

    /// Stores the port this run listens on (reused by the next run without `--port`).
    pub fn save_port(&mut self, port: u16) -> Result<(), ProfileError> {
        if self.port == Some(port) {
            return Ok(());
        }
        self.port = Some(port);
        self.write_profile()
    }

    /// Stores the known peers that belong in the profile (lasting or blocked).
    pub fn save_peers(&mut self, peers: &KnownPeers) -> Result<(), ProfileError> {
        let file = PeersFile {
            format: FORMAT,
            peer: peers.persisted().map(PeerRecord::from).collect(),
        };
        let path = self.dir.join(PEERS_FILE);
        let body = toml::to_string(&file).map_err(|e| io_err(&path, io::Error::other(e)))?;
        let text = Zeroizing::new(format!(
            "# noctua known peers: PeerIds, names, addresses and the secrets we dialed them \
             with.\n# Keep it private (chmod 600).\n{body}"
        ));
        write_atomic(&path, text.as_bytes())?;
        self.peers = peers.clone();
        Ok(())
    }

    fn write_profile(&self) -> Result<(), ProfileError> {
        let file = ProfileFile {
            format: FORMAT,
            secret: self.secret.expose().to_string(),
            port: self.port,
        };
        let path = self.dir.join(PROFILE_FILE);
        let body =
            Zeroizing::new(toml::to_string(&file).map_err(|e| io_err(&path, io::Error::other(e)))?);
        let text = Zeroizing::new(format!(
            "# noctua profile: the connection secret is here; keep it private (chmod 600).\n{}",
            body.as_str()
        ));
        write_atomic(&path, text.as_bytes())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    format: u32,
    secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

impl Drop for ProfileFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    format: u32,
    #[serde(default)]
    peer: Vec<PeerRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerRecord {
    id: toml::Spanned<String>,
    name: String,
    #[serde(default)]
    lasting: bool,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    addrs: Vec<toml::Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_seen: Option<u64>,
}

impl From<&KnownPeer> for PeerRecord {
    fn from(p: &KnownPeer) -> Self {
        PeerRecord {
            id: toml::Spanned::new(0..0, p.peer.to_base58()),
            name: p.name.clone(),
            lasting: p.lasting,
            verified: p.verified,
            blocked: p.blocked,
            addrs: p
                .addrs
                .iter()
                .map(|a| toml::Spanned::new(0..0, a.to_string()))
                .collect(),
            secret: p.secret.clone(),
            last_seen: p.last_seen,
        }
    }
}

impl Drop for PeerRecord {
    fn drop(&mut self) {
        if let Some(s) = &mut self.secret {
            zeroize::Zeroize::zeroize(s);
        }
    }
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn io_err(path: &Path, source: io::Error) -> ProfileError {
    ProfileError::Io {
        path: shown(path),
        source,
    }
}

fn corrupt(path: &Path, text: &str, at: usize, why: impl Into<String>) -> ProfileError {
    let at = at.min(text.len());
    let line = text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    ProfileError::Corrupt {
        path: shown(path),
        line,
        why: why.into(),
    }
}

/// A TOML error as one line with its line number.
fn toml_err(path: &Path, text: &str, e: &toml::de::Error) -> ProfileError {
    let at = e.span().map_or(0, |s| s.start);
    let why = e.message().lines().next().unwrap_or("invalid TOML").trim();
    corrupt(path, text, at, why.to_string())
}

fn parse_identity(path: &Path, text: &str) -> Result<Keypair, ProfileError> {
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some(KEY_MARKER) {
        return Err(corrupt(
            path,
            text,
            0,
            format!("not a noctua identity key (the first line must be {KEY_MARKER:?})"),
        ));
    }
    let second = lines.next().unwrap_or("").trim();
    let bad = |why: &str| corrupt(path, text, text.find('\n').map_or(0, |n| n + 1), why);
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(bad("unexpected text after the key"));
    }
    let mut bytes = Zeroizing::new([0u8; 64]);
    base16ct::mixed::decode(second, bytes.as_mut_slice())
        .map_err(|_| bad("the key must be 128 hexadecimal digits"))?;
    let kp = libp2p::identity::ed25519::Keypair::try_from_bytes(bytes.as_mut_slice())
        .map_err(|_| bad("not a valid Ed25519 key pair"))?;
    Ok(Keypair::from(kp))
}

fn format_identity(k: &Keypair) -> Result<Zeroizing<String>, ProfileError> {
    let ed = k.clone().try_into_ed25519().map_err(|e| ProfileError::Io {
        path: IDENTITY_FILE.into(),
        source: io::Error::other(e),
    })?;
    let bytes = Zeroizing::new(ed.to_bytes());
    let hex = Zeroizing::new(base16ct::lower::encode_string(bytes.as_slice()));
    Ok(Zeroizing::new(format!("{KEY_MARKER}\n{}\n", hex.as_str())))
}

fn parse_profile(path: &Path, text: &str) -> Result<(Secret, Option<u16>), ProfileError> {
    let file: ProfileFile = toml::from_str(text).map_err(|e| toml_err(path, text, &e))?;
    if file.format != FORMAT {
        return Err(corrupt(
            path,
            text,
            text.find("format").unwrap_or(0),
            format!(
                "format {} is not one this noctua reads ({FORMAT}); use a newer noctua",
                file.format
            ),
        ));
    }
    let at = text.find("secret").unwrap_or(0);
    let secret = Secret::new(file.secret.clone())
        .map_err(|e: SecretError| corrupt(path, text, at, format!("invalid secret: {e}")))?;
    Ok((secret, file.port.filter(|&p| p != 0)))
}

fn parse_peers(path: &Path, text: &str) -> Result<KnownPeers, ProfileError> {
    let file: PeersFile = toml::from_str(text).map_err(|e| toml_err(path, text, &e))?;
    if file.format != FORMAT {
        return Err(corrupt(
            path,
            text,
            text.find("format").unwrap_or(0),
            format!(
                "format {} is not one this noctua reads ({FORMAT})",
                file.format
            ),
        ));
    }
    let mut list = Vec::with_capacity(file.peer.len());
    for rec in &file.peer {
        let peer: PeerId =
            rec.id.get_ref().parse().map_err(|_| {
                corrupt(path, text, rec.id.span().start, "not a PeerId (12D3Koo...)")
            })?;
        let mut addrs = Vec::new();
        for a in &rec.addrs {
            let m: Multiaddr = a
                .get_ref()
                .parse()
                .map_err(|_| corrupt(path, text, a.span().start, "not a multiaddr"))?;
            addrs.push(m);
        }
        if let Some(s) = &rec.secret
            && Secret::new(s.clone()).is_err()
        {
            return Err(corrupt(
                path,
                text,
                rec.id.span().start,
                "this peer's secret is invalid",
            ));
        }
        list.push(KnownPeer {
            peer,
            name: rec.name.clone(),
            lasting: rec.lasting,
            verified: rec.verified && rec.lasting,
            blocked: rec.blocked,
            addrs,
            secret: rec.secret.clone(),
            last_seen: rec.last_seen,
        });
    }
    KnownPeers::from_peers(list).map_err(|source| ProfileError::Trust {
        path: shown(path),
        source,
    })
}

/// Creates `dir` (and its parents) for its owner only, if missing.
fn create_private_dir(dir: &Path) -> Result<(), ProfileError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| io_err(dir, e))
}

#[cfg(unix)]
fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The profile's directory must be ours and closed to others.
fn check_dir(dir: &Path) -> Result<(), ProfileError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io_err(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != euid() {
            return Err(ProfileError::Owner {
                path: shown(dir),
                uid: meta.uid(),
                us: euid(),
            });
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ProfileError::DirMode {
                path: shown(dir),
                mode,
            });
        }
    }
    if !meta.is_dir() {
        return Err(io_err(dir, io::Error::other("not a directory")));
    }
    Ok(())
}

/// Reads a private file: None if it does not exist; refused if it is a link, belongs to
/// another user, or group or others may read or write it.
fn read_private(path: &Path) -> Result<Option<Zeroizing<String>>, ProfileError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(ProfileError::Symlink { path: shown(path) });
        }
        Ok(_) => {}
    }
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != euid() {
            return Err(ProfileError::Owner {
                path: shown(path),
                uid: meta.uid(),
                us: euid(),
            });
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o066 != 0 {
            return Err(ProfileError::FileMode {
                path: shown(path),
                mode,
            });
        }
    }
    if meta.len() > MAX_FILE {
        return Err(corrupt(path, "", 0, "too large for a profile file"));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Some(Zeroizing::new(s.to_string()))),
        Err(e) => {
            let text = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
            Err(corrupt(path, &text, text.len(), "not UTF-8 text"))
        }
    }
}

/// Writes `bytes` to `path` atomically: a 0600 temporary file next to it, fsync, rename,
/// fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

#[cfg(unix)]
fn take_lock(dir: &Path, name: &str) -> Result<nix::fcntl::Flock<File>, ProfileError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join(LOCK_FILE);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(false);
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o.open(&path).map_err(|e| io_err(&path, e))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            ProfileError::InUse {
                name: name.to_string(),
                path: shown(&path),
            }
        } else {
            io_err(&path, io::Error::from(errno))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "noctua-profile-unit-{}-{tag}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn names() {
        for ok in ["a", "alice", "Bob-2.home_x", &"x".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_profile_keeps_identity_secret_port_and_peers() {
        let d = tmpdir("keep");
        let (peer, secret) = {
            let mut p = Profile::open(&d, "alice", SecretChoice::Keep).expect("create");
            assert!(p.created());
            p.save_port(4242).expect("port");
            let mut book = KnownPeers::new();
            let bob = PeerId::random();
            book.remember(bob, "Bob", true, None, Some("bob-s".into()), 5)
                .expect("room");
            book.remember(PeerId::random(), "Eph", false, None, None, 5)
                .expect("room");
            p.save_peers(&book).expect("peers");
            (p.peer_id(), p.secret().expose().to_string())
        };
        let dir = d.join("profiles/alice");
        assert_eq!(mode(&dir), 0o700);
        for f in [IDENTITY_FILE, PROFILE_FILE, PEERS_FILE] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        let p = Profile::open(&d, "alice", SecretChoice::Keep).expect("reopen");
        assert!(!p.created() && !p.secret_changed());
        assert_eq!(p.peer_id(), peer);
        assert_eq!(p.secret().expose(), secret);
        assert_eq!(p.port(), Some(4242));
        assert_eq!(p.peers().len(), 1, "the ephemeral peer is not stored");
        let bob = p.peers().iter().next().expect("bob");
        assert_eq!(
            (bob.name.as_str(), bob.secret.as_deref()),
            ("Bob", Some("bob-s"))
        );
        drop(p);
        let p = Profile::open(&d, "alice", SecretChoice::New).expect("new secret");
        assert!(p.secret_changed());
        assert_ne!(p.secret().expose(), secret);
        assert_eq!(p.peer_id(), peer);
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_lives() {
        let d = tmpdir("lock");
        let first = Profile::open(&d, "p", SecretChoice::Keep).expect("first");
        let second = Profile::open(&d, "p", SecretChoice::Keep);
        assert!(
            matches!(second, Err(ProfileError::InUse { .. })),
            "{second:?}"
        );
        drop(first);
        Profile::open(&d, "p", SecretChoice::Keep).expect("free again");
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn open_files_are_refused_and_left_as_they_are() {
        let d = tmpdir("mode");
        drop(Profile::open(&d, "p", SecretChoice::Keep).expect("create"));
        let dir = d.join("profiles/p");
        for f in [IDENTITY_FILE, PROFILE_FILE] {
            let path = dir.join(f);
            let before = std::fs::read(&path).expect("read");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = Profile::open(&d, "p", SecretChoice::New).expect_err("refused");
            let line = err.to_string();
            assert!(
                line.contains(&format!("chmod 600 {}", path.display())) && !line.contains('\n'),
                "{line}"
            );
            assert_eq!(std::fs::read(&path).expect("read"), before);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = Profile::open(&d, "p", SecretChoice::Keep).expect_err("refused");
        assert!(err.to_string().contains("chmod 700"), "{err}");
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn corrupt_and_foreign_files_name_the_file_and_line_and_stay_untouched() {
        let d = tmpdir("corrupt");
        drop(Profile::open(&d, "p", SecretChoice::Keep).expect("create"));
        let dir = d.join("profiles/p");
        let cases: [(&str, &str, usize); 6] = [
            (
                IDENTITY_FILE,
                "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n",
                1,
            ),
            (IDENTITY_FILE, &format!("{KEY_MARKER}\nzz\n"), 2),
            (PROFILE_FILE, "format = 1\nsecret = \"a b\"\n", 2),
            (PROFILE_FILE, "format = 1\nsecret = \"ok\"\ncolour = 3\n", 3),
            (
                PEERS_FILE,
                "format = 1\n[[peer]]\nid = \"nope\"\nname = \"x\"\n",
                3,
            ),
            (PROFILE_FILE, "format = 7\nsecret = \"ok\"\n", 1),
        ];
        for (file, content, line) in cases {
            let path = dir.join(file);
            let saved = std::fs::read(&path).ok();
            std::fs::write(&path, content).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let err = Profile::open(&d, "p", SecretChoice::New).expect_err("refused");
            let want = format!("{} line {line}:", path.display());
            assert!(err.to_string().starts_with(&want), "{err} (want {want})");
            assert!(!err.to_string().contains('\n'), "{err}");
            assert_eq!(std::fs::read(&path).expect("read"), content.as_bytes());
            match saved {
                Some(b) => std::fs::write(&path, b).expect("restore"),
                None => std::fs::remove_file(&path).expect("remove"),
            }
        }
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn a_missing_key_with_a_profile_is_not_silently_replaced() {
        let d = tmpdir("nokey");
        drop(Profile::open(&d, "p", SecretChoice::Keep).expect("create"));
        std::fs::remove_file(d.join("profiles/p").join(IDENTITY_FILE)).expect("rm");
        let err = Profile::open(&d, "p", SecretChoice::Keep).expect_err("refused");
        assert!(matches!(err, ProfileError::KeyMissing { .. }), "{err}");
        assert!(!d.join("profiles/p").join(IDENTITY_FILE).exists());
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn an_explicit_data_dir_is_used_as_is() {
        let explicit = data_dir(Some(Path::new("/x/y"))).expect("explicit");
        assert_eq!(explicit, PathBuf::from("/x/y"));
    }

    #[test]
    fn a_symlinked_profile_file_is_refused_and_left_alone() {
        let d = tmpdir("link");
        drop(Profile::open(&d, "p", SecretChoice::Keep).expect("create"));
        let key = d.join("profiles/p").join(IDENTITY_FILE);
        let elsewhere = d.join("elsewhere.key");
        std::fs::rename(&key, &elsewhere).expect("move");
        std::os::unix::fs::symlink(&elsewhere, &key).expect("symlink");
        let err = Profile::open(&d, "p", SecretChoice::Keep).expect_err("refused");
        assert!(matches!(err, ProfileError::Symlink { .. }), "{err}");
        assert!(
            std::fs::symlink_metadata(&key)
                .expect("still there")
                .file_type()
                .is_symlink()
        );
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}
