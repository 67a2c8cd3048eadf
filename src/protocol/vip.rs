//! The `vip` step: moves a virtual IP address from the old primary to the new one.
//!
//! - preflight (on the new primary): `ip` and `arping` present, the interface exists, and
//!   nobody but the old primary holds the address (`arping -D`; a holder's MAC is compared
//!   with the old primary's).
//! - promote: the old primary releases the address; only when it does not answer at all
//!   (SSH cannot connect) does the new primary take the address over from it. An old primary
//!   that answers but does not release (no permission, sudo wants a password, login refused)
//!   fails the step with nothing added, unless a person forced the promotion: the address must
//!   never be on both servers by deadpool's hand (SPEC 6.3). The new primary then adds the
//!   address, announces it with gratuitous ARP, and checks.
//! - check: the address is on exactly the active server.

use serde::Deserialize;

use super::{Context, HostResult, LoadContext, Protocol, describe_output};
use crate::config::load::{RawSsh, step_ssh};
use crate::error::Problem;
use crate::model::{Concern, Status};
use crate::remote::{self, Exit, Output};
use crate::settings::{Host, SshSettings};
use crate::text::shell_quote;

/// The step's `type`.
pub const TYPE: &str = "vip";

/// The `vip` step's settings.
#[derive(Debug, Clone)]
pub struct Vip {
    pub address: std::net::IpAddr,
    pub prefix: u8,
    pub interface: String,
    pub arping_count: u32,
    /// How deadpool reaches the two servers.
    pub ssh: SshSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    address: String,
    interface: String,
    arping_count: Option<u32>,
    ssh: Option<RawSsh>,
}

/// The `vip` step's keys, validated: an address with its prefix length, an interface name,
/// a sensible ARP count.
pub fn load(table: toml::Table, cx: &LoadContext) -> Result<Vip, Problem> {
    let raw: RawVip = super::raw(table)?;
    let (addr, prefix) = raw.address.split_once('/').ok_or_else(|| {
        Problem::at(
            "address",
            format!(
                "`{}`: expected an address with its prefix length, like \"10.0.0.100/24\"",
                raw.address
            ),
        )
    })?;
    let address: std::net::IpAddr = addr
        .parse()
        .map_err(|_| Problem::at("address", format!("`{addr}` is not an IP address")))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
        Problem::at(
            "address",
            format!("`/{prefix}`: expected a prefix length from 0 to {max}"),
        )
    })?;
    let iface_ok = !raw.interface.is_empty()
        && raw.interface.len() <= 15
        && raw
            .interface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b));
    if !iface_ok {
        return Err(Problem::at(
            "interface",
            format!("`{}` is not an interface name", raw.interface),
        ));
    }
    let arping_count = raw.arping_count.unwrap_or(3);
    if !(1..=20).contains(&arping_count) {
        return Err(Problem::at(
            "arping_count",
            format!("got {arping_count}, expected 1 to 20"),
        ));
    }
    Ok(Vip {
        address,
        prefix,
        interface: raw.interface,
        arping_count,
        ssh: step_ssh(cx.dir, raw.ssh, cx.ssh)?,
    })
}

/// Extracts the MAC address from arping's first reply line (`... [aa:bb:cc:dd:ee:ff] ...`).
const MAC_OF_REPLY: &str = r"sed -n 's/.*\[\([0-9A-Fa-f:]*\)\].*/\1/p' | head -n 1";

impl Vip {
    fn iface(&self) -> String {
        shell_quote(&self.interface)
    }

    fn vip(&self) -> String {
        self.address.to_string()
    }

    fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix)
    }

    /// Prints `present` or `absent`.
    fn status_line(&self) -> String {
        format!(
            "if [ -n \"$(ip -o addr show dev {i} to {v})\" ]; then echo present; else echo absent; fi",
            i = self.iface(),
            v = self.vip()
        )
    }

    /// A privileged command (through sudo when configured): a fixed argument vector that a
    /// sudoers rule can name exactly.
    fn root(&self, words: &[&str]) -> String {
        remote::privileged(&self.ssh, words)
    }

    /// `ip addr del|add CIDR dev IFACE`, privileged.
    fn ip_addr(&self, verb: &str) -> String {
        self.root(&["ip", "addr", verb, &self.cidr(), "dev", &self.interface])
    }

    /// `arping ... -I IFACE TARGET`, privileged (arping needs a raw socket).
    fn arping(&self, options: &[&str], target: &str) -> String {
        let mut words = vec!["arping"];
        words.extend(options);
        words.extend(["-I", &self.interface, target]);
        self.root(&words)
    }

    /// Runs a script as the login user; only its privileged commands go through sudo.
    fn run(&self, host: &str, line: &str, ctx: &Context) -> Output {
        ctx.shell(&Host::Remote(host.to_string()), &self.ssh, line)
    }

    fn holds(&self, host: &str, ctx: &Context) -> (Result<bool, String>, Output) {
        let out = self.run(host, &self.status_line(), ctx);
        let verdict = match (&out.exit, out.stdout.trim()) {
            (Exit::Code(0), "present") => Ok(true),
            (Exit::Code(0), "absent") => Ok(false),
            _ => Err(format!("cannot tell: {}", describe_output(&out))),
        };
        (verdict, out)
    }
}

/// Where the address is, as the active server and the standby said (pure, for tests): not
/// on the active server, or on the standby, sends clients elsewhere now; a server that
/// cannot be asked is about the failover's logins.
fn check_verdict(
    vip: &str,
    on_active: &Result<bool, String>,
    on_standby: &Result<bool, String>,
) -> ((Status, Concern, String), (Status, Concern, String)) {
    let active = match on_active {
        Ok(true) => (
            Status::Ok,
            Concern::Direction,
            format!("{vip} is on the active server"),
        ),
        Ok(false) => (
            Status::Critical,
            Concern::Direction,
            format!("{vip} is NOT on the active server"),
        ),
        Err(e) => (Status::Warning, Concern::Readiness, format!("active: {e}")),
    };
    let standby = match on_standby {
        Ok(true) if matches!(on_active, Ok(true)) => (
            Status::Critical,
            Concern::Direction,
            format!("{vip} is on BOTH servers"),
        ),
        Ok(true) => (
            Status::Critical,
            Concern::Direction,
            format!("{vip} is on the standby"),
        ),
        Ok(false) => (
            Status::Ok,
            Concern::Direction,
            format!("{vip} is not on the standby"),
        ),
        Err(e) => (Status::Warning, Concern::Readiness, format!("standby: {e}")),
    };
    (active, standby)
}

/// What the old primary's answer to the release allows (pure, for tests). `Ok(note)`: the
/// new primary may add the address. `Err(why)`: it must not, or the address could end up on
/// both servers. Only an old primary that does not answer at all is taken over (it may be
/// hung, still holding the address: the gratuitous ARP wins the neighbours over); one that
/// answers with anything but a release is taken over only when `force`d by a person.
fn release_verdict(
    exit: &Exit,
    said: &str,
    old: &str,
    detail: &str,
    force: bool,
) -> Result<String, String> {
    match (exit, said) {
        (Exit::Code(0), "released") => Ok(format!("released by the old primary {old}")),
        (Exit::Code(0), "absent") => Ok(format!("not on the old primary {old}")),
        (Exit::Unreachable(_), _) => Ok(format!(
            "WARNING: old primary {old} unreachable ({detail}): taken over with gratuitous ARP; it may still hold the address"
        )),
        _ if force => Ok(format!(
            "WARNING: old primary {old} answered but did not release the address ({detail}): taken over anyway (forced); remove it there by hand"
        )),
        _ => Err(format!(
            "old primary {old} answers but did not release the address ({detail})"
        )),
    }
}

/// The preflight's verdict from `holder=MAC old=MAC` (pure, for tests).
fn holder_verdict(said: &str, vip: &str, old: &str) -> (Status, String) {
    let field = |key: &str| {
        said.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let (holder, old_mac) = (field("holder="), field("old="));
    if holder.is_empty() {
        (Status::Ok, format!("{vip} is free"))
    } else if holder == old_mac {
        (
            Status::Ok,
            format!("{vip} is held by the old primary {old} ({holder}); it will be moved"),
        )
    } else {
        (
            Status::Critical,
            format!("{vip} is held by {holder}, which is neither server: address conflict"),
        )
    }
}

impl Protocol for Vip {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn ssh_in_use(&self) -> Option<&SshSettings> {
        Some(&self.ssh)
    }

    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        let (new, old) = (ctx.new_primary, ctx.old_primary);
        let (i, v) = (self.iface(), self.vip());
        let line = format!(
            "command -v ip >/dev/null 2>&1 || {{ echo 'ERROR - ip is not installed'; exit 2; }}
command -v arping >/dev/null 2>&1 || {{ echo 'ERROR - arping is not installed'; exit 2; }}
ip link show dev {i} >/dev/null 2>&1 || {{ echo 'ERROR - no interface '{i}; exit 2; }}
if [ -n \"$(ip -o addr show dev {i} to {v})\" ]; then echo here; exit 0; fi
holder=$({detect} 2>/dev/null | {MAC_OF_REPLY})
old=$({ask_old} 2>/dev/null | {MAC_OF_REPLY})
echo \"holder=$holder old=$old\"",
            detect = self.arping(&["-D", "-c", "2", "-w", "3"], &v),
            ask_old = self.arping(&["-c", "1", "-w", "2"], old),
        );
        let out = self.run(new, &line, ctx);
        let said = crate::text::first_line(&out.stdout);
        let (status, message) = match &out.exit {
            Exit::Code(0) if said == "here" => (Status::Ok, format!("{v} is already on {new}")),
            Exit::Code(0) => holder_verdict(&said, &v, old),
            _ => (
                Status::Critical,
                format!("{new}: {}", describe_output(&out)),
            ),
        };
        vec![HostResult::of(new, status, &message, &out)]
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        let (new, old) = (ctx.new_primary, ctx.old_primary);
        let (i, v) = (self.iface(), self.vip());
        let release = format!(
            "if [ -n \"$(ip -o addr show dev {i} to {v})\" ]; then {del} && echo released; else echo absent; fi",
            del = self.ip_addr("del")
        );
        let released = self.run(old, &release, ctx);
        let note = match release_verdict(
            &released.exit,
            released.stdout.trim(),
            old,
            &describe_output(&released),
            ctx.force.is_on(),
        ) {
            Ok(note) => note,
            Err(why) => {
                let message = format!(
                    "{v} NOT moved: {why}; nothing was added on {new}. Remove it from {old} by hand, or let the SSH user release it there (sudo); `deadpool promote --force` takes it over anyway"
                );
                return vec![HostResult::of(old, Status::Critical, &message, &released)];
            }
        };
        // The release is known before the add starts: the address is never on both servers
        // by deadpool's hand. Both sessions were opened together when the failover was
        // decided, so the add follows within one round trip.
        let take = format!(
            "if [ -z \"$(ip -o addr show dev {i} to {v})\" ]; then {add} || exit 2; fi
# Gratuitous ARP in the background: arping waits a second after each announcement, and the
# step need not wait for that. The first one goes out at once.
nohup {announce} >/dev/null 2>&1 &
if [ -n \"$(ip -o addr show dev {i} to {v})\" ]; then echo present; else echo 'ERROR - the address did not stay'; exit 2; fi",
            add = self.ip_addr("add"),
            announce = self.arping(&["-U", "-c", &self.arping_count.to_string()], &v),
        );
        let taken = self.run(new, &take, ctx);
        let (status, message) = match (&taken.exit, taken.stdout.trim()) {
            (Exit::Code(0), "present") => (Status::Ok, format!("{v} is on {new}")),
            _ => (
                Status::Critical,
                format!("could not put {v} on {new}: {}", describe_output(&taken)),
            ),
        };
        // Each host with its own call and time: the release (or why it was taken over
        // without one), then the add.
        vec![
            HostResult::of(old, Status::Ok, &note, &released),
            HostResult::of(new, status, &message, &taken),
        ]
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        let (active, standby) = (ctx.active(), ctx.standby());
        let hosts = [
            Host::Remote(active.to_string()),
            Host::Remote(standby.to_string()),
        ];
        let seen = remote::for_each_host(&hosts, |h| self.holds(h.name(), ctx));
        let (active_result, standby_result) = check_verdict(&self.vip(), &seen[0].0, &seen[1].0);
        let one = |host: &str, (status, concern, message): (Status, Concern, String), out| {
            HostResult::of(host, status, &message, out).about(concern)
        };
        vec![
            one(active, active_result, &seen[0].1),
            one(standby, standby_result, &seen[1].1),
        ]
    }

    fn logins(&self, ctx: &Context) -> Vec<(String, SshSettings)> {
        [ctx.old_primary, ctx.new_primary]
            .iter()
            .map(|h| (h.to_string(), self.ssh.clone()))
            .collect()
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        vec![
            (
                ctx.old_primary.to_string(),
                format!(
                    "{} (skipped only when unreachable; any other failure stops the step)",
                    self.ip_addr("del")
                ),
            ),
            (
                ctx.new_primary.to_string(),
                format!(
                    "{}; {}",
                    self.ip_addr("add"),
                    self.arping(&["-U", "-c", &self.arping_count.to_string()], &self.vip())
                ),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address anywhere but on exactly the active server is about where clients are sent
    /// now; a server that cannot be asked is about the next failover's logins.
    #[test]
    fn check_verdicts() {
        let v = "10.0.0.100/24";
        let e = || Err("cannot tell: ssh refused".to_string());
        let (ok, warn, crit) = (Status::Ok, Status::Warning, Status::Critical);
        let (ready, now) = (Concern::Readiness, Concern::Direction);
        // (on the active server, on the standby, verdicts for each)
        let table = [
            (
                Ok(true),
                Ok(false),
                (ok, now, "on the active server"),
                (ok, now, "not on the standby"),
            ),
            (
                Ok(false),
                Ok(true),
                (crit, now, "NOT on the active server"),
                (crit, now, "is on the standby"),
            ),
            (
                Ok(true),
                Ok(true),
                (ok, now, "on the active server"),
                (crit, now, "on BOTH servers"),
            ),
            (
                Ok(false),
                Ok(false),
                (crit, now, "NOT on the active server"),
                (ok, now, "not on the standby"),
            ),
            (
                e(),
                Ok(false),
                (warn, ready, "active: cannot tell"),
                (ok, now, "not on the standby"),
            ),
            (
                Ok(true),
                e(),
                (ok, now, "on the active server"),
                (warn, ready, "standby: cannot tell"),
            ),
        ];
        for (on_active, on_standby, want_active, want_standby) in table {
            let (a, s) = check_verdict(v, &on_active, &on_standby);
            for ((status, concern, message), (want_s, want_c, words)) in
                [(a, want_active), (s, want_standby)]
            {
                assert_eq!((status, concern), (want_s, want_c), "{message}");
                assert!(message.contains(words), "{message}");
            }
        }
    }

    /// Only silence lets the new primary take the address; any answer but a release stops
    /// the step, unless forced.
    #[test]
    fn release_verdicts() {
        let unreachable = Exit::Unreachable("db1: ssh port 22: timed out".into());
        let refused = Exit::NotStarted("db1: login as dp failed".into());
        // (exit, stdout, force, may take over, words in the note or reason)
        let table: &[(&Exit, &str, bool, bool, &str)] = &[
            (
                &Exit::Code(0),
                "released",
                false,
                true,
                "released by the old primary",
            ),
            (
                &Exit::Code(0),
                "absent",
                false,
                true,
                "not on the old primary",
            ),
            (&unreachable, "", false, true, "unreachable"),
            (&unreachable, "", true, true, "gratuitous ARP"),
            // sudo wants a password, `ip addr del` not permitted, a login refused, a hang.
            (
                &Exit::Code(1),
                "",
                false,
                false,
                "answers but did not release",
            ),
            (
                &Exit::Code(2),
                "",
                false,
                false,
                "answers but did not release",
            ),
            (&refused, "", false, false, "answers but did not release"),
            (
                &Exit::TimedOut,
                "",
                false,
                false,
                "answers but did not release",
            ),
            (
                &Exit::Signal(9),
                "",
                false,
                false,
                "answers but did not release",
            ),
            // Exit 0 with an answer the script never prints: not a release.
            (
                &Exit::Code(0),
                "sudo: something",
                false,
                false,
                "did not release",
            ),
            (&Exit::Code(1), "", true, true, "taken over anyway (forced)"),
            (&refused, "", true, true, "taken over anyway (forced)"),
        ];
        for (exit, said, force, takes_over, words) in table {
            let verdict = release_verdict(exit, said, "db1", "detail", *force);
            assert_eq!(
                verdict.is_ok(),
                *takes_over,
                "{exit:?} {said:?} force={force}"
            );
            let text = verdict.unwrap_or_else(|e| e);
            assert!(text.contains(words), "{exit:?} {said:?}: {text}");
        }
    }

    #[test]
    fn holders_are_told_apart() {
        assert_eq!(
            holder_verdict("holder= old=", "10.0.0.100", "10.0.0.11").0,
            Status::Ok
        );
        assert_eq!(
            holder_verdict("holder=AA:BB:CC:00:00:01 old=aa:bb:cc:00:00:01", "v", "o").0,
            Status::Ok
        );
        let (status, message) =
            holder_verdict("holder=aa:bb:cc:00:00:09 old=aa:bb:cc:00:00:01", "v", "o");
        assert_eq!(status, Status::Critical);
        assert!(message.contains("conflict"));
        // The old primary gave no ARP answer (powered off) yet someone holds the address.
        assert_eq!(
            holder_verdict("holder=aa:bb:cc:00:00:09 old=", "v", "o").0,
            Status::Critical
        );
    }
}
