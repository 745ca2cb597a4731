"""effbench's shared harness: runner, records, efficiency meter, metrics, tasks, zoo, tables."""
