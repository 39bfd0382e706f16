"""Pure numbers from bars and ticks: numpy/pandas/statsmodels/sklearn functions and their
incremental twins.

No Dash, sockets or databases here (tests/test_diagram.py checks the imports); pages, the API
and the engine all call the same functions, so a figure is computed one way everywhere.
"""
