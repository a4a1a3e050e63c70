# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_flowy_global_optspecs
    string join \n h/help V/version
end

function __fish_flowy_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_flowy_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_flowy_using_subcommand
    set -l cmd (__fish_flowy_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c flowy -n "__fish_flowy_needs_command" -s h -l help -d 'Print help'
complete -c flowy -n "__fish_flowy_needs_command" -s V -l version -d 'Print version'
complete -c flowy -n "__fish_flowy_needs_command" -f -a "serve" -d 'Run the daemon (defaults: UDP 2055, the queries of config/queries/, stdout)'
complete -c flowy -n "__fish_flowy_needs_command" -f -a "query" -d 'Run a query once over flow files'
complete -c flowy -n "__fish_flowy_needs_command" -f -a "check" -d 'Compile queries and print each one\'s plan and partition key'
complete -c flowy -n "__fish_flowy_needs_command" -f -a "replay" -d 'Send the UDP payloads of a capture of exports to a collector'
complete -c flowy -n "__fish_flowy_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c flowy -n "__fish_flowy_needs_command" -f -a "man" -d 'Print the man page (roff), generated from these definitions'
complete -c flowy -n "__fish_flowy_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c flowy -n "__fish_flowy_using_subcommand serve" -l config -d 'Configuration file (TOML); without it the embedded defaults apply' -r -F
complete -c flowy -n "__fish_flowy_using_subcommand serve" -l listen -d 'UDP address to collect on (repeatable)' -r
complete -c flowy -n "__fish_flowy_using_subcommand serve" -l query -d 'Query file to run (repeatable)' -r -F
complete -c flowy -n "__fish_flowy_using_subcommand serve" -l output -d 'Output path; `-` is stdout' -r
complete -c flowy -n "__fish_flowy_using_subcommand serve" -l partitions -d 'Cluster worker: the partitions to consume, A-B or A (cluster.worker_partitions)' -r
complete -c flowy -n "__fish_flowy_using_subcommand serve" -l check-config -d 'Load the configuration and compile the queries, print what would run, and exit (no socket is bound, no file is opened)'
complete -c flowy -n "__fish_flowy_using_subcommand serve" -s h -l help -d 'Print help'
complete -c flowy -n "__fish_flowy_using_subcommand query" -l input -d 'Flow files, directories of rotated flow files (nfcapd.*, ft-v05.*, in rotation order, recursively) or `-` for standard input, read in order as one input; gzip-compressed content is recognised' -r -F
complete -c flowy -n "__fish_flowy_using_subcommand query" -l input-format -d 'pcap, ipfix, flow-tools, nfcapd, jsonl, nfdump-json or goflow2 (default: detect from content)' -r
complete -c flowy -n "__fish_flowy_using_subcommand query" -l from -d 'Keep records with stime >= T (RFC 3339 or epoch ms)' -r
complete -c flowy -n "__fish_flowy_using_subcommand query" -l to -d 'Keep records with stime < T (RFC 3339 or epoch ms)' -r
complete -c flowy -n "__fish_flowy_using_subcommand query" -l output -d 'Output path; `-` is stdout, a file is replaced' -r
complete -c flowy -n "__fish_flowy_using_subcommand query" -l format -d 'json (JSON Lines), text, or csv (one row per record of a match)' -r
complete -c flowy -n "__fish_flowy_using_subcommand query" -l window -d 'Tumbling window length (`5m`, `300s`, `1h`; bare numbers are ms)' -r
complete -c flowy -n "__fish_flowy_using_subcommand query" -l lateness -d 'Records more than D behind the latest stime read are late (see --late); memory then follows D. Default: exact, the disorder is measured by a first pass over the input' -r
complete -c flowy -n "__fish_flowy_using_subcommand query" -l late -d 'Late records: process (out of order) or drop' -r
complete -c flowy -n "__fish_flowy_using_subcommand query" -l max-records -d 'At most N records per match; a match with more carries the first N and "records_omitted"' -r
complete -c flowy -n "__fish_flowy_using_subcommand query" -l no-records -d 'Leave the records out of each match'
complete -c flowy -n "__fish_flowy_using_subcommand query" -s h -l help -d 'Print help'
complete -c flowy -n "__fish_flowy_using_subcommand check" -s h -l help -d 'Print help'
complete -c flowy -n "__fish_flowy_using_subcommand replay" -l to -d 'The collector to send to' -r
complete -c flowy -n "__fish_flowy_using_subcommand replay" -l speed -d 'Time scale: 2 replays twice as fast; absent = as fast as possible' -r
complete -c flowy -n "__fish_flowy_using_subcommand replay" -s h -l help -d 'Print help'
complete -c flowy -n "__fish_flowy_using_subcommand completions" -s h -l help -d 'Print help'
complete -c flowy -n "__fish_flowy_using_subcommand man" -s h -l help -d 'Print help'
complete -c flowy -n "__fish_flowy_using_subcommand help; and not __fish_seen_subcommand_from serve query check replay completions man help" -f -a "serve" -d 'Run the daemon (defaults: UDP 2055, the queries of config/queries/, stdout)'
complete -c flowy -n "__fish_flowy_using_subcommand help; and not __fish_seen_subcommand_from serve query check replay completions man help" -f -a "query" -d 'Run a query once over flow files'
complete -c flowy -n "__fish_flowy_using_subcommand help; and not __fish_seen_subcommand_from serve query check replay completions man help" -f -a "check" -d 'Compile queries and print each one\'s plan and partition key'
complete -c flowy -n "__fish_flowy_using_subcommand help; and not __fish_seen_subcommand_from serve query check replay completions man help" -f -a "replay" -d 'Send the UDP payloads of a capture of exports to a collector'
complete -c flowy -n "__fish_flowy_using_subcommand help; and not __fish_seen_subcommand_from serve query check replay completions man help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c flowy -n "__fish_flowy_using_subcommand help; and not __fish_seen_subcommand_from serve query check replay completions man help" -f -a "man" -d 'Print the man page (roff), generated from these definitions'
complete -c flowy -n "__fish_flowy_using_subcommand help; and not __fish_seen_subcommand_from serve query check replay completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
