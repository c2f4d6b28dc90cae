# bash completion for hotswap(1): its commands, the options of each, and
# their values. Installed as share/bash-completion/completions/hotswap,
# where bash-completion loads it on first use; to try it from the source
# tree: source contrib/hotswap.bash
#
# It names the same options as `hotswap --help`: tests/test_host_docs.c
# checks that the two agree.

# Options of each command (the host is the command "run").
_hotswap_options() {
  case $1 in
  run)
    echo --control --cache-dir --allow-state-reset --allow-insecure \
      --log-format --log-level --settle --sandbox-timeout --sandbox-cpu \
      --sandbox-mem --build-timeout --plugin-werror --no-upgrade-watch \
      --crash-grace --crash-limit --callback-budget --help --version
    ;;
  status) echo --json --control --help ;;
  reload) echo --control --help ;;
  new) echo --dir --help ;;
  upgrade) echo --control --help ;;
  esac
}

# COMPREPLY from the words of compgen "$@", one per line (names with
# blanks stay whole).
_hotswap_reply() {
  local line
  COMPREPLY=()
  while IFS= read -r line; do
    COMPREPLY+=("$line")
  done < <(compgen "$@")
}

_hotswap() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev= cmd=run
  ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}

  # --name=VALUE: bash breaks the word at '=', so "=" or "--name" "=" come
  # before the value.
  if [[ $cur == = ]]; then
    cur=
  elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then
    prev=${COMP_WORDS[COMP_CWORD - 2]}
  fi

  # The command is the first argument or none.
  if ((COMP_CWORD > 1)); then
    case ${COMP_WORDS[1]} in
    status | reload | new | upgrade) cmd=${COMP_WORDS[1]} ;;
    esac
  fi

  # The value of the option before the cursor.
  case $prev in
  --control)
    compopt -o filenames 2>/dev/null
    _hotswap_reply -f -- "$cur"
    return
    ;;
  --cache-dir | --dir)
    compopt -o filenames 2>/dev/null
    _hotswap_reply -d -- "$cur"
    return
    ;;
  --log-format)
    _hotswap_reply -W "text json" -- "$cur"
    return
    ;;
  --log-level)
    _hotswap_reply -W "debug info warn error" -- "$cur"
    return
    ;;
  --settle | --sandbox-timeout | --sandbox-cpu | --sandbox-mem | --build-timeout | \
    --crash-grace | --crash-limit | --callback-budget)
    COMPREPLY=() # a number
    return
    ;;
  esac

  if [[ $cur == -* ]]; then
    _hotswap_reply -W "$(_hotswap_options "$cmd")" -- "$cur"
    return
  fi

  case $cmd in
  run)
    # The first word is a command or PLUGIN_DIR; later ones PLUGIN_DIR.
    compopt -o filenames 2>/dev/null
    _hotswap_reply -d -- "$cur"
    if ((COMP_CWORD == 1)); then
      local c
      for c in status reload new upgrade; do
        [[ $c == "$cur"* ]] && COMPREPLY+=("$c")
      done
    fi
    ;;
  *)
    # status and upgrade take no operand; the NAME of reload and new is
    # free.
    COMPREPLY=()
    ;;
  esac
  return 0
}

complete -F _hotswap hotswap
