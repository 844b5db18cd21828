"""`orchestrator completion bash|zsh`: a shell completion script, made from the parser itself.

Every command, subcommand and option the parser knows is in the script, so commands added by
any module complete without more work. Install it with
`orchestrator completion bash > /etc/bash_completion.d/orchestrator` or
`eval "$(orchestrator completion zsh)"` in `.zshrc` (zsh runs the bash script through
`bashcompinit`).
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description=(
            "Print a completion script: `source <(orchestrator completion bash)`, or in "
            '.zshrc: eval "$(orchestrator completion zsh)".'
        ),
    )
    completion.add_argument("shell", choices=["bash", "zsh"], help="the shell")
    completion.set_defaults(func=_completion)


def _completion(args: argparse.Namespace) -> int:
    from orchestrator.cli import build_parser

    script = bash_script(build_parser())
    if args.shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    sys.stdout.write(script)
    return 0


def command_words(parser: argparse.ArgumentParser, path: str = "") -> dict[str, list[str]]:
    """For each command path ('' for the top, 'dlq', 'dlq list', ...): its subcommands, then
    its options."""
    subs: list[str] = []
    words: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                subs.append(name)
                words.update(command_words(child, f"{path} {name}".strip()))
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    words[path] = [*subs, *options]
    return words


def bash_script(parser: argparse.ArgumentParser) -> str:
    words = command_words(parser)
    cases = "\n".join(f'        "{path}") echo "{" ".join(w)}" ;;' for path, w in words.items())
    return _BASH.replace("@CASES@", cases)


_BASH = """\
# bash completion for orchestrator (made by `orchestrator completion bash`)
_orchestrator_words() {
    case "$1" in
@CASES@
    esac
}
_orchestrator() {
    local cur=${COMP_WORDS[COMP_CWORD]} path="" word i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case "$word" in -*) continue ;; esac
        case " $(_orchestrator_words "$path") " in
            *" $word "*) path="${path:+$path }$word" ;;
        esac
    done
    COMPREPLY=($(compgen -W "$(_orchestrator_words "$path")" -- "$cur"))
}
complete -o default -F _orchestrator orchestrator
"""
