"""The theory: what the paper and its follow-ups predict, with no network trained.

- :mod:`~dlnjax.theory.closed_form`: the paper's closed forms (Eqs. 6-15: mode strengths,
  learning times, the optimal rate, the infinite-depth delay, fixed points, conserved quantities);
  its names are also exported here (``theory.mode_strength``, ``theory.learning_time``).
- :mod:`~dlnjax.theory.finite_rate`: gradient descent at a finite rate on the decoupled modes
  (stability edge, the fastest rate).
- :mod:`~dlnjax.theory.balanced`: the balanced-initialisation solution and its NTK.
- :mod:`~dlnjax.theory.hessian`: Hessian-vector products and the top eigenpair (sharpness).
- :mod:`~dlnjax.theory.gradient_flow`: the gradient-flow ODE on the sufficient statistics (diffrax).
- :mod:`~dlnjax.theory.end_to_end_flow`: the balanced flow on the end-to-end map (Arora, Cohen &
  Hazan 2018; a cost flat in depth), integrated by diffrax or by
- :mod:`~dlnjax.theory.rosenbrock_w`: a Rosenbrock-W integrator (ROS34PW2) for stiff flows with an
  approximate Jacobian (steps sized by accuracy, not stability).

Names that several modules define (``learning_time``) are exported from ``closed_form`` here;
the others are reached through their module.
"""

from dlnjax._lazy import attach

_CLOSED = ("mode_strength", "learning_time", "learning_time_large_depth", "half_learning_time",
           "hyperbolic_learning_time", "hyperbolic_trajectory", "optimal_learning_rate",
           "stability_edge_learning_rate", "learning_time_at_rate_scale", "infinite_depth_delay",
           "fixed_point", "conserved_quantities", "mode_error")
__getattr__, __dir__, __all__ = attach(
    __name__, ("balanced", "closed_form", "end_to_end_flow", "finite_rate", "gradient_flow", "hessian",
                "rosenbrock_w"),
    {**{n: "closed_form" for n in _CLOSED}, "TopEigen": "hessian", "top_eigen": "hessian", "hvp": "hessian",
     "FlowSolution": "gradient_flow", "FlowOptions": "gradient_flow", "FlowTime": "gradient_flow",
     "FastestRate": "finite_rate", "fastest_rate": "finite_rate", "BalancedState": "balanced"},
)
