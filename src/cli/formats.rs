//! `--format` values: the library's format enums stay free of clap, and
//! are made flag values here, each value with its help line.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::report::Format;
use crate::report::plan::PlanFormat;
use crate::report::watch::WatchFormat;

/// Implements [`ValueEnum`] for a library enum: `Variant => "name", "help"`.
macro_rules! flag_values {
    ($type:ident { $($variant:ident => $name:literal, $help:literal;)+ }) => {
        impl ValueEnum for $type {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($type::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($type::$variant => PossibleValue::new($name).help($help)),+
                })
            }
        }
    };
}

flag_values!(Format {
    Auto => "auto", "`tty` on a terminal, else `plain` (folded per step on GitHub and GitLab)";
    Tty => "tty", "live progress for a terminal";
    Plain => "plain", "one line per happening, for CI logs";
    Json => "json", "one JSON event per line, for machines";
});

flag_values!(PlanFormat {
    Text => "text", "for a person";
    Json => "json", "for machines";
    Markdown => "markdown", "for a PR comment or a job summary";
});

flag_values!(WatchFormat {
    Text => "text", "one line per happening, for a person";
    Json => "json", "one JSON object per line, for machines";
});
