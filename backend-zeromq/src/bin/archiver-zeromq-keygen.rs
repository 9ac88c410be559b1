//! Writes a CURVE key pair for a ZeroMQ hub or archive server.
//!
//! ```text
//! archiver-zeromq-keygen /etc/mailman/hub        # hub.key (secret, 0600) and hub.pub
//! archiver-zeromq-keygen /etc/hyperkitty/archive # archive.key and archive.pub
//! ```
//!
//! `NAME.key` holds the pair (readable by its owner only) and stays where
//! it was made; `NAME.pub` is the public key, to hand to the other side (a
//! hub's to its archive servers, an archive server's into the hub's grants
//! file as `curve_public_key`). It never overwrites a file, and never
//! prints a key.

use std::path::PathBuf;
use std::process::ExitCode;

use backend_zeromq::CurveKeyPair;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [prefix] = args.as_slice() else {
        eprintln!(
            "usage: archiver-zeromq-keygen NAME\n  writes NAME.key (the CURVE key pair, mode 0600) and NAME.pub (its public key); refuses to overwrite either"
        );
        return ExitCode::from(2);
    };
    if prefix.starts_with('-') {
        eprintln!(
            "archiver-zeromq-keygen: {prefix:?} is not a file name (usage: archiver-zeromq-keygen NAME)"
        );
        return ExitCode::from(2);
    }
    let written =
        CurveKeyPair::generate().and_then(|pair| pair.write_files(&PathBuf::from(prefix)));
    match written {
        Ok((secret, public)) => {
            println!(
                "wrote {} (secret: keep it here) and {} (public: hand it to the other side)",
                secret.display(),
                public.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            // Key errors are `Auth`; its "refused by the broker" prefix
            // means nothing here.
            let message = match error {
                archiver_core::BackendError::Auth(message) => message,
                other => other.to_string(),
            };
            eprintln!("archiver-zeromq-keygen: {message}");
            ExitCode::FAILURE
        }
    }
}
