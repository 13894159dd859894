//! `crak-dump sign`, `crak-dump keygen` and `crak-dump validate --verify`: Ed25519 signatures
//! in an AUTH record (`spec/crak-format.md#auth`, §3.17), through `crak_format::auth`.
//!
//! Key files: the secret key is its 32-byte seed, the public key its 32 bytes, each as 64
//! hexadecimal digits and a newline. `keygen -o KEY` writes KEY (mode 0600) and KEY.pub.

use crate::cli::{KeygenArgs, SignArgs};
use crate::{display_name, EXIT_NO, EXIT_OK};
use anyhow::{bail, Context as _};
use crak_format::auth::{self, PublicKey, SecretKey};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn read_key_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the key", path.display()))
}

/// Reads a secret key file.
pub fn load_secret(path: &Path) -> anyhow::Result<SecretKey> {
    SecretKey::parse_hex(&read_key_file(path)?)
        .with_context(|| format!("{}: not a crak secret key", path.display()))
}

/// Reads a public key file.
pub fn load_public(path: &Path) -> anyhow::Result<PublicKey> {
    PublicKey::parse_hex(&read_key_file(path)?)
        .with_context(|| format!("{}: not a crak public key", path.display()))
}

/// `crak-dump sign IMAGE --key KEY -o OUT`.
pub fn run_sign(args: &SignArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let key = load_secret(&args.key)?;
    let name = display_name(&args.image);
    let data = crate::read_all(&args.image).with_context(|| format!("{name}: cannot read"))?;
    let signed = auth::sign(&data, &key).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    if crate::is_stdin(&args.output) {
        out.write_all(&signed)?;
    } else {
        super::write_atomically(&args.output, &mut |file| {
            let mut file: &std::fs::File = file;
            file.write_all(&signed)
                .with_context(|| format!("{}: cannot write", args.output.display()))
        })?;
    }
    Ok(EXIT_OK)
}

/// `crak-dump keygen -o KEY`: a new key pair from the kernel's random source.
pub fn run_keygen(args: &KeygenArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("cannot read /dev/urandom")?;
    let key = SecretKey::from_seed(seed);
    let mut pub_path = args.output.clone().into_os_string();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    if args.output.exists() && !args.force {
        bail!(
            "{}: exists (use --force to replace it)",
            args.output.display()
        );
    }
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&args.output)
            .with_context(|| format!("{}: cannot create", args.output.display()))?;
        f.write_all(key.to_hex().as_bytes())?;
    }
    std::fs::write(&pub_path, key.public().to_hex())
        .with_context(|| format!("{}: cannot write", pub_path.display()))?;
    writeln!(
        out,
        "{}: secret key\n{}: public key",
        args.output.display(),
        pub_path.display()
    )?;
    Ok(EXIT_OK)
}

/// `validate --verify PUBKEY`: each image must carry a valid signature by the key. Prints one
/// line per image that does not and returns [`EXIT_NO`] then; `None` when all verify.
pub fn verify_images(
    key_path: &Path,
    images: &[PathBuf],
    out: &mut dyn Write,
) -> anyhow::Result<Option<i32>> {
    let key = load_public(key_path)?;
    let mut bad = false;
    for path in images {
        let name = display_name(path);
        let data = crate::read_all(path).with_context(|| format!("{name}: cannot read"))?;
        if let Err(e) = auth::verify(&data, &key) {
            writeln!(out, "{name}: not verified: {e}")?;
            bad = true;
        }
    }
    Ok(bad.then_some(EXIT_NO))
}
