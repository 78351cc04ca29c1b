"""ml-collections configs. Each file's `get_config(arg)` returns a locked ConfigDict; `arg` picks
a preset (`runlocal` is always the tiny CPU one). Run experiments as
`python -m experiments.<name> --config configs/<name>.py:<preset> --workdir runs/<dir>`."""
