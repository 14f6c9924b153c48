//! `images`: build bootcast code images from guest-app ELFs, sign, verify and
//! inspect them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use images::build::{self, BuildOptions, Image, ImageJson};
use images::sign::{self, SigningKey};
use proto::NodeType;

/// Build, sign, verify and inspect bootcast code images (manifest + payload).
#[derive(Parser)]
#[command(name = "images")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build an image from a RISC-V ELF executable.
    ///
    /// The ELF must be 64-bit little-endian RISC-V, ET_EXEC, with
    /// non-overlapping PT_LOAD segments inside the image region and its entry
    /// point in loaded bytes. The payload spans the segments' physical
    /// addresses, gaps zero-filled.
    Build {
        /// The guest-app ELF.
        elf: PathBuf,
        /// Node type the image is for: accessor, xy, drive, comm or op-panel.
        #[arg(long = "type", value_name = "TYPE", value_parser = parse_node_type)]
        node_type: NodeType,
        /// Image name: 1 to 16 bytes of UTF-8.
        #[arg(long, value_parser = parse_name)]
        name: String,
        /// Image version, MAJOR.MINOR.PATCH (major and minor at most 255,
        /// patch at most 65535).
        #[arg(long, value_parser = build::parse_version)]
        version: u32,
        /// Pad the payload (with a fixed pseudo-random fill) to this size, in bytes or with a K or M
        /// suffix (262144, 256K, 1M); for benchmarks that need realistic
        /// image sizes.
        #[arg(long, value_name = "SIZE", value_parser = build::parse_size)]
        pad_to: Option<u32>,
        /// Where to write the image.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
    /// Lay image files out as one bundle, for combined broadcasts. Each
    /// file must be a valid image, one per node type.
    Bundle {
        /// The image files, in the order they go into the bundle.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Where to write the bundle.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
    /// Print an image's manifest and check its payload digest.
    ///
    /// Fails if the file does not parse as an image. A tampered image is
    /// still printed ("digest: MISMATCH"), then the command fails.
    Inspect {
        /// The image file.
        file: PathBuf,
        /// Print JSON instead of `key: value` lines.
        #[arg(long)]
        json: bool,
    },
    /// Make a new Ed25519 signing key.
    ///
    /// Writes the secret key to KEYFILE (readable by you only) and the
    /// public key to KEYFILE.pub, and prints the key id. Refuses to
    /// overwrite either file. Both are text: a header line
    /// (`bootcast-ed25519-secret-key-v1` or `bootcast-ed25519-public-key-v1`)
    /// and 64 hex digits; `#` lines are comments.
    Keygen {
        /// Where to write the secret key.
        #[arg(short, long, value_name = "KEYFILE")]
        output: PathBuf,
    },
    /// Sign an image: sets the manifest's key id and an Ed25519 signature
    /// over manifest bytes 0..96, which hold the payload's SHA-256.
    ///
    /// Refuses an image whose payload does not match its digest. Replaces
    /// any earlier signature.
    Sign {
        /// The secret key file (from `images keygen`).
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// The image file.
        image: PathBuf,
        /// Where to write the signed image (default: IMAGE itself).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Check an image as a node would: its payload digest, then its
    /// signature against a public key. Exits non-zero, naming the reason,
    /// if either fails.
    Verify {
        /// The public key file (KEYFILE.pub from `images keygen`).
        #[arg(long, value_name = "PUBFILE")]
        pubkey: PathBuf,
        /// The image file.
        image: PathBuf,
    },
}

fn parse_node_type(s: &str) -> Result<NodeType, String> {
    NodeType::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = NodeType::ALL.iter().map(|t| t.name()).collect();
        format!(
            "unknown node type {s:?} (expected one of {})",
            names.join(", ")
        )
    })
}

fn parse_name(s: &str) -> Result<String, build::BuildError> {
    build::encode_name(s).map(|_| s.to_string())
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Build {
            elf,
            node_type,
            name,
            version,
            pad_to,
            output,
        } => {
            let opts = BuildOptions {
                node_type,
                name,
                version,
                pad_to,
            };
            build_image(&elf, &opts, &output)
        }
        Cmd::Bundle { images, output } => bundle(&images, &output),
        Cmd::Inspect { file, json } => inspect(&file, json),
        Cmd::Keygen { output } => keygen(&output),
        Cmd::Sign { key, image, output } => sign_image(&key, &image, output),
        Cmd::Verify { pubkey, image } => verify(&pubkey, &image),
    }
}

fn build_image(elf: &Path, opts: &BuildOptions, output: &Path) -> anyhow::Result<()> {
    let img = build::build_file(elf, opts)?;
    std::fs::write(output, img.to_bytes())
        .with_context(|| format!("{}: cannot write", output.display()))?;
    let m = &img.manifest;
    println!(
        "{}: {} {} {}, {} bytes at {:#x}, sha256 {}",
        output.display(),
        opts.node_type.name(),
        opts.name,
        build::format_version(m.version),
        m.size,
        m.load_addr,
        build::hex(&m.sha256),
    );
    Ok(())
}

fn bundle(images: &[PathBuf], output: &Path) -> anyhow::Result<()> {
    let mut files: Vec<(NodeType, &Path, Vec<u8>)> = Vec::new();
    for path in images {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let img = Image::parse(&bytes).with_context(|| path.display().to_string())?;
        if let Some((_, other, _)) = files.iter().find(|(t, _, _)| *t == img.manifest.node_type) {
            anyhow::bail!(
                "{}: a second image for node type {} (first: {})",
                path.display(),
                img.manifest.node_type.name(),
                other.display()
            );
        }
        files.push((img.manifest.node_type, path, bytes));
    }
    let parts: Vec<(NodeType, &[u8])> = files.iter().map(|(t, _, b)| (*t, b.as_slice())).collect();
    let bundle = images::bundle::build(&parts).with_context(|| output.display().to_string())?;
    std::fs::write(output, &bundle)
        .with_context(|| format!("{}: cannot write", output.display()))?;
    println!(
        "{}: {} images, {} bytes",
        output.display(),
        parts.len(),
        bundle.len()
    );
    Ok(())
}

fn inspect(file: &Path, json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let img = Image::parse(&bytes).with_context(|| file.display().to_string())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ImageJson::from(&img))?);
    } else {
        print!("{}", build::render_image(&img));
    }
    img.verify_digest()
        .with_context(|| file.display().to_string())
}

fn keygen(output: &Path) -> anyhow::Result<()> {
    let public = public_key_path(output);
    // Check both first, so a refusal leaves nothing behind.
    for p in [output, &public] {
        if p.exists() {
            anyhow::bail!("{}: already exists; refusing to overwrite it", p.display());
        }
    }
    let key = SigningKey::generate()?;
    key.write_new(output)?;
    if let Err(e) = sign::write_new_public_key(&public, &key.public_key()) {
        let _ = std::fs::remove_file(output);
        return Err(e);
    }
    println!(
        "{}: secret key, key id {} (keep this file secret)",
        output.display(),
        build::hex(&key.key_id())
    );
    println!(
        "{}: public key {}",
        public.display(),
        build::hex(&key.public_key())
    );
    Ok(())
}

fn sign_image(key: &Path, image: &Path, output: Option<PathBuf>) -> anyhow::Result<()> {
    let signer = SigningKey::load(key)?;
    let mut img = read_image(image)?;
    img.verify_digest()
        .with_context(|| format!("{}: refusing to sign", image.display()))?;
    img.sign(&signer);
    let out = output.unwrap_or_else(|| image.to_path_buf());
    write_atomically(&out, &img.to_bytes())?;
    println!(
        "{}: signed, key id {}",
        out.display(),
        build::hex(&signer.key_id())
    );
    Ok(())
}

fn verify(pubkey: &Path, image: &Path) -> anyhow::Result<()> {
    let public = sign::load_public_key(pubkey)?;
    let img = read_image(image)?;
    img.verify(&public)
        .with_context(|| image.display().to_string())?;
    println!(
        "{}: ok: payload digest and signature (key id {})",
        image.display(),
        build::hex(&img.manifest.key_id)
    );
    Ok(())
}

/// `KEYFILE.pub` next to `KEYFILE`.
fn public_key_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn read_image(path: &Path) -> anyhow::Result<Image> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Image::parse(&bytes).with_context(|| path.display().to_string())
}

/// Writes through a temporary file and a rename, so that a failure never
/// leaves a half-written image (signing in place rewrites the input).
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", path.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("{}: cannot write", path.display()))
    })
}

fn main() -> ExitCode {
    match run(Cli::parse().cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the file and the reason on one line.
            eprintln!("images: {e:#}");
            ExitCode::FAILURE
        }
    }
}
