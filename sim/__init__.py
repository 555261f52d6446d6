"""Discrete-event simulator running the real ACD engine and routing strategies on a virtual clock.

Public API (docs/simulator.md)::

    from sim.scenario import load_scenario, scenario_from_dict, single_queue
    from sim.run import simulate, compare              # replications, paired comparisons
    from sim.report import result_json, plot_result    # JSON, text and plots
    from sim.erlang import erlang_c, erlang_a, staff   # Erlang C / A and staffing
    from sim.kernel import drive                       # feed recorded events to an engine
    from sim.cli import add_commands                   # `hotline sim ...`, `hotline erlang ...`
"""
