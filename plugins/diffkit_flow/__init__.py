"""Built-in plugin: flow matching, sampled by the euler, heun and dpm++2m ODE solvers."""

from diffkit import hookimpl
from diffkit_flow.flow import FlowMatching


@hookimpl
def register_degradations(register):
    register(FlowMatching, name="flow")
