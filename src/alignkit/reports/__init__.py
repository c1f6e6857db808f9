"""How each command's results are shown on the console (rich lives in console.py).

One module per command family: `data` (data inspect, data demo), `labels` (label --stats), `models`,
`plots` (plot), `sample` (sample). Each function takes what a library function returned and prints it;
none computes anything. The demo's table is the demo's own (`alignkit.reports.demo`).
"""
