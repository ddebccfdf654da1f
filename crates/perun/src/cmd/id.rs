//! `perun id`: create and show stakeholder identities.

use anyhow::Result;
use clap::Subcommand;
use perun_core::Name;
use perun_seal::StakeholderKeys;

use crate::home::Home;
use crate::ui::print_json;

/// Identity subcommands.
#[derive(Subcommand)]
pub enum IdCmd {
    /// Create an identity: an Ed25519 signing key and an X25519 (age) key, files mode 0600.
    New {
        /// The stakeholder's name (a-z, 0-9, '-', '_', '.').
        name: Name,
    },
    /// Register an identity with the trust service (`perun remote add` first).
    Register {
        /// The stakeholder's name.
        name: Name,
        /// What it does: data-owner, model-owner, provider, receiver (repeat, or comma
        /// separated). The service allows each action only to the role it belongs to.
        #[arg(long = "role", required = true, value_delimiter = ',')]
        roles: Vec<perun_core::Role>,
    },
    /// Vote, as a member, to admit a pending registration (where the service lets a
    /// quorum of members admit; otherwise its operator admits with `perun serve --admit`).
    Admit {
        /// The pending registration's name.
        name: Name,
        /// Its key's fingerprint, as the applicant's `perun id show NAME` prints it: the
        /// vote counts only for that key.
        #[arg(long)]
        fingerprint: String,
        #[command(flatten)]
        who: crate::cmd::context::As,
    },
    /// The registrations awaiting admission, with their keys' fingerprints: compare them
    /// with the applicants' own (`perun id show NAME`) before you vote.
    Applications {
        #[command(flatten)]
        who: crate::cmd::context::As,
    },
    /// Show an identity's public halves.
    Show {
        /// The stakeholder's name.
        name: Name,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an identity subcommand.
pub fn run(cmd: IdCmd, home: &Home) -> Result<()> {
    match cmd {
        IdCmd::New { name } => {
            anyhow::ensure!(
                !perun_proto::audit::Actor::RESERVED.contains(&name.as_str()),
                "the name `{name}` is reserved (it names the trust service's own actors in the audit log): choose another"
            );
            let keys = StakeholderKeys::generate(name.clone());
            let dir = home.identity_dir(&name);
            keys.save(&dir)?;
            println!("created identity `{name}` in {}", dir.display());
            show(&keys, false)
        }
        IdCmd::Show { name, json } => show(&home.load_identity(&name)?, json),
        IdCmd::Register { name, roles } => crate::cmd::remote::register(home, &name, &roles),
        IdCmd::Admit { name, fingerprint, who } => crate::cmd::remote::vote_admission(home, &name, &fingerprint, &who),
        IdCmd::Applications { who } => crate::cmd::remote::applications(home, &who),
    }
}

fn show(keys: &StakeholderKeys, json: bool) -> Result<()> {
    let p = keys.public();
    if json {
        return print_json(&p);
    }
    println!("name:          {}", p.name);
    println!("signing key:   ed25519:{}", p.signing_key);
    println!("age recipient: {}", p.age_recipient);
    println!("fingerprint:   {}", p.fingerprint());
    Ok(())
}
