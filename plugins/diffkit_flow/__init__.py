"""Built-in plugin: flow matching, sampled by the euler, heun and dpm++2m ODE solvers."""

from diffkit import hookimpl


@hookimpl
def register_degradations(register):
    from diffkit_flow.flow import FlowMatching

    register(FlowMatching, name="flow")
