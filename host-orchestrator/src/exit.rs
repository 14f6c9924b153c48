//! How a command ends, as its exit code: distinct for a pass, a failed
//! verdict, a usage or configuration error, a missing environment (QEMU,
//! built artifacts) and a run the user interrupted.

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran to the end and everything held.
    Pass,
    /// It ran to the end and something did not hold.
    Fail,
    /// The user stopped it (Ctrl-C, SIGTERM) before it ran to the end.
    Interrupted,
}

/// Something the machine lacks for the run (not a mistake in the command
/// or its files): QEMU, the built guest artifacts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvironmentMissing(pub String);

/// The exit codes, as the README lists them.
pub mod code {
    /// The run passed.
    pub const PASS: u8 = 0;
    /// The verdict is fail.
    pub const FAIL: u8 = 1;
    /// Bad arguments or files (clap's own usage errors exit 2 too).
    pub const USAGE: u8 = 2;
    /// Something the run needs is not installed or not built.
    pub const ENVIRONMENT: u8 = 3;
    /// The user stopped the run before it ended (128 + SIGINT).
    pub const INTERRUPTED: u8 = 130;
}

/// The exit code of a command that returned `result`.
pub fn code_of(result: &anyhow::Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Pass) => code::PASS,
        Ok(Outcome::Fail) => code::FAIL,
        Ok(Outcome::Interrupted) => code::INTERRUPTED,
        Err(e) if e.chain().any(|c| c.is::<EnvironmentMissing>()) => code::ENVIRONMENT,
        Err(_) => code::USAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn each_ending_has_its_own_code() {
        let missing: anyhow::Result<Outcome> = Err(EnvironmentMissing(
            "qemu-system-riscv64 is not installed".into(),
        ))
        .context("starting the testbed");
        let cases: [(anyhow::Result<Outcome>, u8); 5] = [
            (Ok(Outcome::Pass), 0),
            (Ok(Outcome::Fail), 1),
            (Err(anyhow::anyhow!("--nodes: must be 1 to 200")), 2),
            (missing, 3),
            (Ok(Outcome::Interrupted), 130),
        ];
        for (result, want) in &cases {
            assert_eq!(code_of(result), *want, "{result:?}");
        }
    }
}
