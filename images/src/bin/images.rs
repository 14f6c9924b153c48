//! `images`: build bootcast code images from guest-app ELFs and inspect them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use images::build::{self, BuildOptions, Image, ImageJson};
use proto::NodeType;

/// Build and inspect bootcast code images (manifest + payload).
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
        /// Zero-pad the payload to this size, in bytes or with a K or M
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
            let img = build::build_file(&elf, &opts)?;
            std::fs::write(&output, img.to_bytes())
                .with_context(|| format!("{}: cannot write", output.display()))?;
            let m = &img.manifest;
            println!(
                "{}: {} {} {}, {} bytes at {:#x}, sha256 {}",
                output.display(),
                node_type.name(),
                opts.name,
                build::format_version(m.version),
                m.size,
                m.load_addr,
                build::hex(&m.sha256),
            );
        }
        Cmd::Bundle { images, output } => {
            let mut files: Vec<(NodeType, PathBuf, Vec<u8>)> = Vec::new();
            for path in &images {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                let img = Image::parse(&bytes).with_context(|| path.display().to_string())?;
                if let Some((_, other, _)) =
                    files.iter().find(|(t, _, _)| *t == img.manifest.node_type)
                {
                    anyhow::bail!(
                        "{}: a second image for node type {} (first: {})",
                        path.display(),
                        img.manifest.node_type.name(),
                        other.display()
                    );
                }
                files.push((img.manifest.node_type, path.clone(), bytes));
            }
            let parts: Vec<(NodeType, &[u8])> =
                files.iter().map(|(t, _, b)| (*t, b.as_slice())).collect();
            let bundle =
                images::bundle::build(&parts).with_context(|| output.display().to_string())?;
            std::fs::write(&output, &bundle)
                .with_context(|| format!("{}: cannot write", output.display()))?;
            println!(
                "{}: {} images, {} bytes",
                output.display(),
                parts.len(),
                bundle.len()
            );
        }
        Cmd::Inspect { file, json } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
            let img = Image::parse(&bytes).with_context(|| file.display().to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ImageJson::from(&img))?);
            } else {
                print!("{}", build::render_image(&img));
            }
            img.verify_digest()
                .with_context(|| file.display().to_string())?;
        }
    }
    Ok(())
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
