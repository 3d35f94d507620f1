//! `holdfast tls self-signed`: a certificate for a LAN install with no certificate authority.
//! Written to `tls/` in the data folder, where `serve` finds it without configuration; a
//! running server picks up a replaced pair within seconds.

use crate::DbArgs;
use crate::backup_cmd::load;
use anyhow::Context as _;
use base64::Engine as _;
use clap::{Args, Subcommand};
use holdfast_app::files;
use rcgen::PublicKeyData as _;
use std::path::Path;

#[derive(Subcommand)]
pub enum TlsCommand {
    /// Make a self-signed certificate (ECDSA P-256) for the names and addresses users type,
    /// and print its fingerprint for them to compare with what their browser shows.
    SelfSigned(SelfSignedArgs),
    /// Print the fingerprint of the certificate Holdfast serves.
    Fingerprint {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Args)]
pub struct SelfSignedArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Host names and IP addresses, comma separated, e.g. crm.lan,192.168.1.10.
    #[arg(long, value_delimiter = ',', required = true)]
    hosts: Vec<String>,
    /// Days the certificate is valid (browsers accept at most 825 for such certificates).
    #[arg(long, default_value_t = 825)]
    days: i64,
    /// Replace an existing certificate.
    #[arg(long)]
    replace: bool,
}

pub fn run(command: TlsCommand) -> anyhow::Result<()> {
    match command {
        TlsCommand::SelfSigned(args) => self_signed(args),
        TlsCommand::Fingerprint { db } => {
            let config = load(&db)?;
            let files = config.tls_files()?.context(
                "no certificate configured ([tls] cert_file) and none in the data folder's tls/",
            )?;
            println!(
                "{}  {}",
                holdfast_web::transport::file_fingerprint(&files.cert_file)?,
                files.cert_file.display()
            );
            Ok(())
        }
    }
}

fn self_signed(args: SelfSignedArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=825).contains(&args.days),
        "--days must be from 1 to 825"
    );
    let hosts: Vec<String> = args
        .hosts
        .iter()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    anyhow::ensure!(
        !hosts.is_empty(),
        "--hosts needs the names or addresses users will type"
    );
    let config = load(&args.db)?;
    crate::prepare_data_dir(&config)?;
    let dir = config.absolute_data_dir()?.join("tls");
    files::private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !args.replace && (cert_path.exists() || key_path.exists()) {
        anyhow::bail!(
            "{} already holds a certificate; add --replace to make a new one (browsers that trusted the old one will warn again)",
            dir.display()
        );
    }
    let key = rcgen::KeyPair::generate().context("generating the key")?;
    let mut params = rcgen::CertificateParams::new(hosts.clone())
        .with_context(|| format!("{} is not a valid host name or address", hosts.join(",")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hosts[0].clone());
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Holdfast (self-signed)");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(args.days);
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    replace_private(&key_path, key.serialize_pem().as_bytes())?;
    replace_private(&cert_path, cert.pem().as_bytes())?;
    let pin = base64::engine::general_purpose::STANDARD.encode({
        use sha2::Digest as _;
        sha2::Sha256::digest(key.subject_public_key_info())
    });
    println!(
        "Wrote a self-signed certificate for {} (valid {} days):\n  {}\n  {} (private key, readable by this account only)\n\n\
         SHA-256 fingerprint:\n  {}\n\n\
         Browsers will warn that no known authority vouches for it. Before accepting it, compare the fingerprint the browser shows\n\
         (padlock → certificate) with the one above — or install cert.pem as trusted on each computer.\n\
         For scripts: curl --cacert {} … , or pin the key: --pinnedpubkey 'sha256//{pin}'\n\n\
         `holdfast serve` uses it from its next start; a running server picks it up within seconds.",
        hosts.join(", "),
        args.days,
        cert_path.display(),
        key_path.display(),
        holdfast_web::transport::fingerprint(cert.der()),
        cert_path.display(),
    );
    Ok(())
}

/// Writes `contents` to `path` through a private temporary file and a rename, so a reader never
/// sees half a file.
fn replace_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let temp = path.with_extension("pem.partial");
    let _ = std::fs::remove_file(&temp);
    files::write_secret_new(&temp, contents)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
