//! The development key ring: one KEK kept in a file, so `detour dev` needs no key
//! configuration and data it wrote stays readable across restarts.
//!
//! Not for deployed environments: the key sits in plain text beside the data it protects.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::VaultError;
use crate::cipher;
use crate::keyring::KeyRing;
use crate::settings::{KekSettings, VaultSettingsError};

/// The key's file name inside the directory given to [`KeyRing::load_or_create_dev`].
pub const DEV_KEK_FILE: &str = "dev-kek.json";
/// The id of a newly created development KEK.
pub const DEV_KEK_ID: &str = "dev-kek-1";

impl KeyRing {
    /// The development key ring: the KEK in `dir/dev-kek.json`, created (file 0600, directory
    /// 0700) with a random key on first use and reused afterwards.
    pub fn load_or_create_dev(dir: &Path) -> Result<KeyRing, VaultError> {
        let path = dir.join(DEV_KEK_FILE);
        let json = match std::fs::read(&path) {
            Ok(json) => {
                restrict_permissions(&path).map_err(io(&path))?;
                Zeroizing::new(json)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_dir(dir).map_err(io(dir))?;
                create_key_file(&path)?
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let settings: KekSettings = serde_json::from_slice(&json).map_err(|e| VaultError::DevKekFormat {
            path: path.clone(),
            line: e.line(),
            column: e.column(),
        })?;
        let kek = settings.kek().map_err(|(field, problem)| VaultError::DevKek {
            path: path.clone(),
            source: VaultSettingsError { setting: field.into(), problem },
        })?;
        KeyRing::new(kek, [])
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + use<> {
    let path = path.to_owned();
    move |source| VaultError::Io { path, source }
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes a new key to a private temporary file and links it into place, so that of two
/// processes starting at once one wins and the other reads the complete file it wrote.
fn create_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let key = Zeroizing::new(cipher::random_key()?);
    let settings = KekSettings::new(DEV_KEK_ID, STANDARD.encode(key.as_slice()));
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(&settings)
            .map_err(|e| VaultError::Io { path: path.to_owned(), source: std::io::Error::other(e) })?,
    );
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let tmp = temporary_path(path, nonce);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(&json).and_then(|()| file.sync_all()).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(&tmp)(e)
        })?;
    }
    let linked = match std::fs::hard_link(&tmp, path) {
        // A file system without hard links: a rename is nearly as good.
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists && !path.exists() => {
            std::fs::rename(&tmp, path)
        }
        other => other,
    };
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the development key-encryption key");
            Ok(json)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map(Zeroizing::new).map_err(io(path))
        }
        Err(e) => Err(io(path)(e)),
    }
}

fn temporary_path(path: &Path, nonce: u32) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.{nonce}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// A key file readable by others is made private again.
fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the development key-encryption key was readable by others; setting 0600"
            );
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
