"""The run's report, `reports/index.html`: one self-contained page built from what the
other stages wrote. Pure: the `report` stage reads the files and writes the string
`build_report` returns; nothing here opens a path, reads params or talks to MLflow."""
