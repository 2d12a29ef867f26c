"""The spec room: a study's YAML file -> a typed, validated space (params, `when`, constraints, objectives)
and the rules that judge trials by it (feasibility, the Pareto front). Nothing here touches storage,
MLflow or training."""
