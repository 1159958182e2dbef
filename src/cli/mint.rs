//! `rolegate mint`: sign a test token.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;

use crate::mint::{self, Signer};

#[derive(Debug, Args)]
pub(super) struct MintArgs {
    /// Private key (PEM): RSA → RS256, EC → ES256/ES384, Ed25519 → EdDSA.
    #[arg(long, required_unless_present = "secret_env", conflicts_with = "secret_env")]
    key: Option<PathBuf>,
    /// Name of an environment variable holding an HS256 secret.
    #[arg(long)]
    secret_env: Option<String>,
    /// Claims as a JSON object.
    #[arg(long)]
    claims: String,
    /// Lifetime: sets iat and exp unless the claims have them (30s, 15m, 1h, 2d; negative for expired).
    #[arg(long, default_value = "1h", allow_hyphen_values = true)]
    ttl: String,
    /// The `kid` header: the id of the key in the issuer's `keys` or JWKS.
    #[arg(long)]
    kid: Option<String>,
}

pub(super) fn mint_cmd(args: &MintArgs) -> anyhow::Result<ExitCode> {
    let signer = match (&args.key, &args.secret_env) {
        (Some(key), _) => Signer::Pem(std::fs::read(key).with_context(|| format!("reading {}", key.display()))?),
        (None, Some(var)) => Signer::Secret(
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?.into_bytes(),
        ),
        (None, None) => bail!("give --key or --secret-env"),
    };
    let claims: serde_json::Value = serde_json::from_str(&args.claims).context("--claims is not JSON")?;
    let ttl = mint::parse_ttl(&args.ttl).map_err(|e| anyhow!(e))?;
    let token = mint::sign(&signer, &claims, args.kid.as_deref(), Some(ttl)).map_err(|e| match &args.key {
        Some(key) => anyhow!("--key {}: {e}", key.display()),
        None => anyhow!(e),
    })?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
