//! `deadpool completions SHELL`: prints a completion script generated from the clap
//! definition in `cli.rs`, so it never falls behind the real options. For bash, zsh and
//! fish it also completes pool names (for `--pool` and the POOL argument of `promote`,
//! `reset`, `pause` and `resume`) from the config dir named on the command line, else
//! `$DEADPOOL_CONFIG`, else /etc/deadpool, and offers `primary secondary` only where
//! promote's target goes.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionsArgs};
use crate::error::Outcome;

pub fn run(args: &CompletionsArgs) -> Result<Outcome> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    // Into a buffer first: clap_complete panics on a write error such as a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    let script = String::from_utf8(script).context("the generated completion script")?;
    let script = with_pools(args.shell, &script, &Cli::command());
    std::io::stdout()
        .lock()
        .write_all(script.as_bytes())
        .context("writing the completion script to stdout")?;
    Ok(Outcome::Done)
}

/// Prints the pool names of the config dir given as the first argument: each
/// `pools/*.toml` by its stem, or by a top-level `name = "..."` (as the config reads
/// them). Shared by the three shells; it holds no single quote.
const POOL_NAMES_AWK: &str = r#"FNR == 1 { if (pool != "") print pool; pool = FILENAME; sub(/.*\//, "", pool); sub(/\.toml$/, "", pool); top = 1 }
/^[ \t]*\[/ { top = 0 }
top && /^[ \t]*name[ \t]*=[ \t]*"/ { v = $0; sub(/^[^"]*"/, "", v); sub(/".*$/, "", v); pool = v }
END { if (pool != "") print pool }"#;

/// What the shell functions need to know of the command line, from clap: the subcommands
/// whose first positional argument is a pool, and every option that takes a value (its
/// value is not a positional argument).
struct Shape {
    pool_commands: Vec<String>,
    valued_options: Vec<String>,
}

fn shape(cli: &clap::Command) -> Shape {
    let mut pool_commands = Vec::new();
    let mut valued = std::collections::BTreeSet::new();
    let mut note = |cmd: &clap::Command| {
        for arg in cmd.get_arguments() {
            if arg.is_positional() || !arg.get_action().takes_values() {
                continue;
            }
            if let Some(long) = arg.get_long() {
                valued.insert(format!("--{long}"));
            }
            if let Some(short) = arg.get_short() {
                valued.insert(format!("-{short}"));
            }
        }
    };
    note(cli);
    for sub in cli.get_subcommands() {
        note(sub);
        if sub
            .get_positionals()
            .next()
            .is_some_and(|a| a.get_id() == "pool")
        {
            pool_commands.push(sub.get_name().to_string());
        }
    }
    Shape {
        pool_commands,
        valued_options: valued.into_iter().collect(),
    }
}

fn with_pools(shell: Shell, script: &str, cli: &clap::Command) -> String {
    let shape = shape(cli);
    match shell {
        Shell::Bash => format!("{script}{}", bash(&shape)),
        Shell::Zsh => zsh(script),
        Shell::Fish => fish(script, &shape),
        _ => script.to_string(),
    }
}

fn bash(shape: &Shape) -> String {
    let valued = shape.valued_options.join("|");
    let pools = shape.pool_commands.join("|");
    format!(
        r#"
# Pool names, from the config dir (--config, else $DEADPOOL_CONFIG, else /etc/deadpool).
_deadpool_pools() {{
    local dir="${{DEADPOOL_CONFIG:-/etc/deadpool}}" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --config)
                # bash splits `--config=DIR` into `--config`, `=`, `DIR`.
                if [[ ${{COMP_WORDS[i+1]}} == = ]]; then dir="${{COMP_WORDS[i+2]}}"; else dir="${{COMP_WORDS[i+1]}}"; fi
                ;;
        esac
    done
    local files=("$dir"/pools/*.toml)
    [[ -e ${{files[0]}} ]] || return 0
    awk '{POOL_NAMES_AWK}' "${{files[@]}}" 2>/dev/null
}}

# Pools where a pool goes, promote's target after it; everything else as generated.
_deadpool_with_pools() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local sub="" positional=0 i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            {valued}) if [[ ${{COMP_WORDS[i+1]}} == = ]]; then ((i += 2)); else ((i += 1)); fi ;;
            -*) ;;
            *) if [[ -z $sub ]]; then sub="${{COMP_WORDS[i]}}"; else ((positional++)); fi ;;
        esac
    done
    if [[ $prev == --pool || ($prev == = && ${{COMP_WORDS[COMP_CWORD-2]}} == --pool) ]]; then
        COMPREPLY=($(compgen -W "$(_deadpool_pools)" -- "$cur"))
        return 0
    fi
    if [[ $cur != -* ]]; then
        case "$sub" in
            {pools})
                if ((positional == 0)); then
                    COMPREPLY=($(compgen -W "$(_deadpool_pools)" -- "$cur"))
                    return 0
                elif [[ $sub == promote ]] && ((positional == 1)); then
                    COMPREPLY=($(compgen -W "primary secondary" -- "$cur"))
                    return 0
                fi
                ;;
        esac
    fi
    _deadpool "$@"
}}

if [[ "${{BASH_VERSINFO[0]}}" -eq 4 && "${{BASH_VERSINFO[1]}}" -ge 4 || "${{BASH_VERSINFO[0]}}" -gt 4 ]]; then
    complete -F _deadpool_with_pools -o nosort -o bashdefault -o default deadpool
else
    complete -F _deadpool_with_pools -o bashdefault -o default deadpool
fi
"#
    )
}

fn zsh(script: &str) -> String {
    let function = format!(
        r#"
# Pool names, from the config dir (--config, else $DEADPOOL_CONFIG, else /etc/deadpool).
(( $+functions[_deadpool_pools] )) ||
_deadpool_pools() {{
    local dir=${{DEADPOOL_CONFIG:-/etc/deadpool}} i
    local -a w files pools
    w=(${{(z)BUFFER}})
    for (( i = 1; i < $#w; i++ )); do
        case $w[i] in
            --config) dir=${{(Q)w[i+1]}} ;;
            --config=*) dir=${{(Q)w[i]#--config=}} ;;
        esac
    done
    files=($dir/pools/*.toml(N))
    (( $#files )) || return 1
    pools=(${{(f)"$(awk '{POOL_NAMES_AWK}' $files 2>/dev/null)"}})
    compadd -a pools
}}
"#
    );
    let mut out = String::new();
    for line in script.lines() {
        // Pools where a pool goes: the POOL arguments and `--pool`.
        let line = if line.starts_with("':pool -- ") || line.starts_with("'--pool=[") {
            line.replace(":_default'", ":_deadpool_pools'")
        } else if line.starts_with("':target -- ") {
            // promote's SERVER: the roles every pool has (an address works too).
            line.replace(":_default'", ":(primary secondary)'")
        } else {
            line.to_string()
        };
        if line.starts_with("if [ \"$funcstack[1]\" = \"_deadpool\" ]") {
            out.push_str(&function);
            out.push('\n');
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn fish(script: &str, shape: &Shape) -> String {
    let mut out = String::new();
    for line in script.lines() {
        if line.contains(" -l pool ") && line.ends_with(" -r") {
            out.push_str(line);
            out.push_str(" -f -a \"(__fish_deadpool_pools)\"\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let valued = shape.valued_options.join(" ");
    let pools = shape.pool_commands.join(" ");
    out.push_str(&format!(
        r#"
# Pool names, from the config dir (--config, else $DEADPOOL_CONFIG, else /etc/deadpool).
function __fish_deadpool_pools
    set -l dir /etc/deadpool
    if set -q DEADPOOL_CONFIG; and test -n "$DEADPOOL_CONFIG"
        set dir $DEADPOOL_CONFIG
    end
    set -l words (commandline -opc)
    for i in (seq (count $words))
        switch $words[$i]
            case --config
                set -l next (math $i + 1)
                set -q words[$next]; and set dir $words[$next]
            case '--config=*'
                set dir (string replace -- --config= '' $words[$i])
        end
    end
    set -l files $dir/pools/*.toml
    test (count $files) -gt 0; or return 0
    awk '{POOL_NAMES_AWK}' $files 2>/dev/null
end

# How many arguments follow the subcommand, options and their values left out.
function __fish_deadpool_positionals
    set -l words (commandline -opc)
    set -e words[1]
    set -l sub 0
    set -l n 0
    set -l skip 0
    for w in $words
        if test $skip -eq 1
            set skip 0
            continue
        end
        if contains -- $w {valued}
            set skip 1
        else if string match -q -- '-*' $w
            continue
        else if test $sub -eq 0
            set sub 1
        else
            set n (math $n + 1)
        end
    end
    echo $n
end

complete -c deadpool -n "__fish_deadpool_using_subcommand {pools}; and test (__fish_deadpool_positionals) -eq 0" -f -a "(__fish_deadpool_pools)" -d pool
complete -c deadpool -n "__fish_deadpool_using_subcommand promote; and test (__fish_deadpool_positionals) -eq 1" -f -a "primary secondary"
complete -c deadpool -n "__fish_deadpool_using_subcommand promote; and test (__fish_deadpool_positionals) -ge 2" -f
complete -c deadpool -n "__fish_deadpool_using_subcommand reset pause resume; and test (__fish_deadpool_positionals) -ge 1" -f
"#
    ));
    out
}
