//! The `plugin` step: a user executable run as `COMMAND preflight|promote|check` with the
//! pool described in its environment (the contract in the README).

use std::path::Path;

use super::{Action, Context, HostResult, Protocol, host_result};
use crate::remote;

#[derive(Debug)]
pub struct PluginStep<'a> {
    pub program: &'a Path,
    pub options: &'a [crate::config::PluginOption],
}

impl PluginStep<'_> {
    fn invoke(&self, action: Action, ctx: &Context) -> Vec<HostResult> {
        let argv = vec![
            self.program.to_string_lossy().into_owned(),
            action.as_str().to_string(),
        ];
        let out = remote::run_local(&argv, &self.env(action, ctx), ctx.left());
        vec![host_result("local", &out, action == Action::Check)]
    }

    fn env(&self, action: Action, ctx: &Context) -> Vec<(String, String)> {
        let mut env = vec![
            ("DEADPOOL_POOL".to_string(), ctx.pool.name.clone()),
            ("DEADPOOL_ACTION".to_string(), action.as_str().to_string()),
            ("DEADPOOL_PRIMARY".to_string(), ctx.pool.primary.clone()),
            ("DEADPOOL_SECONDARY".to_string(), ctx.pool.secondary.clone()),
            (
                "DEADPOOL_OLD_PRIMARY".to_string(),
                ctx.old_primary.to_string(),
            ),
            (
                "DEADPOOL_NEW_PRIMARY".to_string(),
                ctx.new_primary.to_string(),
            ),
            (
                "DEADPOOL_DRY_RUN".to_string(),
                if ctx.dry_run { "1" } else { "0" }.to_string(),
            ),
            ("DEADPOOL_STEP".to_string(), ctx.step.name.clone()),
        ];
        env.extend(
            self.options
                .iter()
                .map(|o| (o.env.clone(), o.value.clone())),
        );
        env
    }
}

impl Protocol for PluginStep<'_> {
    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        self.invoke(Action::Preflight, ctx)
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        self.invoke(Action::Promote, ctx)
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        self.invoke(Action::Check, ctx)
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        let mut words = vec![
            format!("DEADPOOL_OLD_PRIMARY={}", ctx.old_primary),
            format!("DEADPOOL_NEW_PRIMARY={}", ctx.new_primary),
        ];
        words.extend(
            self.options
                .iter()
                .map(|o| format!("{}={}", o.env, crate::text::shell_quote(o.shown()))),
        );
        words.push(crate::text::shell_quote(&self.program.to_string_lossy()));
        words.push("promote".to_string());
        let line = words.join(" ");
        vec![("local".to_string(), line)]
    }
}
