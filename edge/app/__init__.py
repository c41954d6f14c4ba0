"""The command line and its glue: argument parsing (cli, run_args, train_args), the TOML config (config)
and its writer (config_write), `edgerec bench` and `edgerec capture`, the torchrun entry (torchrun). Each
subcommand parses its flags and calls one library function.

Imports: any part of edge; training only lazily, when `edgerec train` runs. Nothing imports it.
"""
