//! `deadpool man`: prints the man page (roff), generated from the clap definition in
//! `cli.rs`. One page holds every subcommand, each with its synopsis and options, so the
//! package installs a single deadpool(1) that never falls behind the real options.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

use crate::cli::Cli;
use crate::error::Outcome;

pub fn run() -> Result<Outcome> {
    let page = page().context("rendering the man page")?;
    std::io::stdout()
        .lock()
        .write_all(page.as_bytes())
        .context("writing the man page to stdout")?;
    Ok(Outcome::Done)
}

/// clap_mangen's own page only points at one page per subcommand (deadpool-tick(1), ...);
/// this one puts them all in a COMMANDS section instead, built from clap_mangen's pieces.
fn page() -> std::io::Result<String> {
    // Taken before clap builds it, so the implicit `help` subcommand is not listed.
    let cli = Cli::command();
    let top = Man::new(cli.clone());
    // man and whatis read the .TH line first; the preamble only has to precede its first use.
    let head = render(|w| top.render_title(w))?;
    let (title, preamble): (Vec<&str>, Vec<&str>) =
        head.lines().partition(|l| l.starts_with(".TH "));
    let mut page: String = title
        .iter()
        .chain(&preamble)
        .map(|l| format!("{l}\n"))
        .collect();
    for part in [
        render(|w| top.render_name_section(w))?,
        render(|w| top.render_synopsis_section(w))?,
        render(|w| top.render_description_section(w))?,
        render(|w| top.render_options_section(w))?,
    ] {
        page.push_str(&without_preamble(&part));
    }

    let mut commands = Roff::new();
    commands.control("SH", ["COMMANDS"]);
    page.push_str(&commands.to_roff());
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{} {}", cli.get_name(), sub.get_name());
        let mut heading = Roff::new();
        heading.control("SS", [name.as_str()]);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            heading.text([roman(about.to_string())]);
        }
        page.push_str(&heading.to_roff());
        let man = Man::new(sub.clone().bin_name(&name));
        // The subcommand's synopsis and options, without their own .SH headings.
        for part in [
            render(|w| man.render_synopsis_section(w))?,
            render(|w| man.render_options_section(w))?,
        ] {
            let body = without_preamble(&part);
            let body = body.lines().filter(|l| !l.starts_with(".SH "));
            let mut roff = Roff::new();
            roff.control("PP", []);
            page.push_str(&roff.to_roff());
            for line in body {
                page.push_str(line);
                page.push('\n');
            }
        }
    }
    page.push_str(&without_preamble(&render(|w| {
        top.render_version_section(w)
    })?));
    Ok(page)
}

fn render(part: impl Fn(&mut Vec<u8>) -> std::io::Result<()>) -> std::io::Result<String> {
    let mut out = Vec::new();
    part(&mut out)?;
    String::from_utf8(out).map_err(std::io::Error::other)
}

/// Every rendered piece starts with the same two lines defining the apostrophe string; the
/// page needs them once.
fn without_preamble(part: &str) -> String {
    part.lines()
        .filter(|l| !l.starts_with(".ie \\n(.g .ds Aq") && !l.starts_with(".el .ds Aq"))
        .map(|l| format!("{l}\n"))
        .collect()
}
