"""The Lab tab: define or pick an HMM, sample from it, fit one with EM (iteration by
iteration), compare learned with true parameters (states matched), and walk the trellis."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from components import figures as F
from components import lab as L
from components.trellis import column_table, trellis_figure
from hmm_engine.errors import HMMStudioError

# A word model ends in an absorbing state: with long sequences the flat start (uniform
# segmentation) gives most states to the last one and EM can stall there; 24 frames suit it.
PRESET_LENGTH = {"left-to-right word model (2-D Gaussian)": 24}
DEFAULT_PRESET = "noisy two-state switch (1-D Gaussian)"


def _err(exc: Exception) -> gr.Error:
    if isinstance(exc, HMMStudioError):
        return gr.Error(str(exc), title="Input problem")
    return gr.Error(f"{type(exc).__name__}: {exc}", title="Something went wrong")


# --------------------------------------------------------------------------- figures


def sample_figure(spec: L.ModelSpec, data: L.Sample, max_frames: int = 400) -> go.Figure:
    """The first sequence: observations over time, coloured by their true state."""
    T = min(data.states.shape[1], max_frames)
    st = data.states[0, :T]
    obs = data.obs[0, :T]
    fig = F._new_figure(f"First sample: {T} frames", height=280)
    t = np.arange(T)
    if spec.kind == "categorical":
        y, ylab = obs.astype(int), "symbol"
    else:
        y, ylab = obs[:, 0], "x[0]"
    for k in range(spec.num_states):
        sel = st == k
        fig.add_trace(go.Scatter(x=t[sel], y=y[sel], mode="markers", name=spec.states[k],
                                 marker=dict(color=F.state_colour(k), size=6)))
    fig.add_trace(go.Scatter(x=t, y=y, mode="lines", line=dict(color="#9ca3af", width=0.7), showlegend=False,
                             hoverinfo="skip"))
    yaxis = dict(title=dict(text=ylab))
    if spec.kind == "categorical":
        yaxis.update(tickmode="array", tickvals=list(range(len(spec.symbols))), ticktext=spec.symbols)
    fig.update_layout(xaxis=dict(title=dict(text="frame")), yaxis=yaxis,
                      legend=F.bottom_legend(), margin=dict(b=100))
    return fig


def _gauss(x, mu, sd):
    return np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def data_figure(spec: L.ModelSpec, data: L.Sample, learned: dict, iteration: int,
                plain_hmm: L.Fit | None = None) -> go.Figure:
    """What the learned model looks like against the data and the truth, after ``iteration``."""
    title = f"After EM iteration {iteration}"
    K = spec.num_states
    if spec.kind == "categorical":
        fig = F._new_figure(title + ": emission probabilities (true: hatched)", height=320)
        for k in range(K):
            c = F.state_colour(k)
            fig.add_trace(go.Bar(x=[f"{spec.states[k]}·{s}" for s in spec.symbols], y=spec.emissionprob[k],
                                 name=f"true {spec.states[k]}", marker=dict(color=c, opacity=0.35,
                                                                           pattern=dict(shape="/"))))
            fig.add_trace(go.Bar(x=[f"{spec.states[k]}·{s}" for s in spec.symbols], y=learned["emissionprob"][k],
                                 name=f"learned {spec.states[k]}", marker=dict(color=c)))
        fig.update_layout(barmode="group", yaxis=dict(title=dict(text="P(symbol | state)"), range=[0, 1]),
                          legend=F.bottom_legend(), margin=dict(b=100))
        return fig
    if spec.kind == "semi-markov":
        runs = L.run_lengths(data.states, K)
        fig = F._subplots(rows=1, cols=K, subplot_titles=[s for s in spec.states], horizontal_spacing=0.06)
        for k in range(K):
            d = runs[k]
            dmax = int(max(d.max() if d.size else 1, 2 * spec.mean_durations[k]))
            hist = np.bincount(d, minlength=dmax + 1)[1:dmax + 1] / max(1, d.size)
            xs = np.arange(1, dmax + 1)
            fig.add_trace(go.Bar(x=xs, y=hist, name="sampled durations", marker_color=F.state_colour(k),
                                 opacity=0.5, showlegend=k == 0), row=1, col=k + 1)
            fig.add_trace(go.Scatter(x=xs, y=learned["duration_pmf"][k][:dmax], mode="lines",
                                     name="semi-Markov fit", line=dict(color="#1CA71C", width=2),
                                     showlegend=k == 0), row=1, col=k + 1)
            if plain_hmm is not None:
                a = float(np.clip(plain_hmm.params["transmat"][k, k], 0, 1 - 1e-9))
                fig.add_trace(go.Scatter(x=xs, y=(1 - a) * a ** (xs - 1), mode="lines", name="plain HMM (geometric)",
                                         line=dict(color="#FB0D0D", dash="dash", width=2), showlegend=k == 0),
                              row=1, col=k + 1)
            fig.update_xaxes(title_text="frames", row=1, col=k + 1)
        fig.update_layout(template=F._TEMPLATE, title=dict(text=title + ": state durations"), height=330,
                          legend=F.bottom_legend(), margin=dict(b=90, t=64))
        return fig
    if spec.obs_dim == 1:
        x = data.obs.reshape(-1)
        grid = np.linspace(x.min() - 0.5, x.max() + 0.5, 300)
        occ = np.bincount(data.states.ravel(), minlength=K) / data.states.size
        fig = F._new_figure(title + ": data, true (dashed) and learned Gaussians", height=320)
        fig.add_trace(go.Histogram(x=x, histnorm="probability density", name="samples", marker_color="#9ca3af",
                                   opacity=0.5, nbinsx=80))
        for k in range(K):
            c = F.state_colour(k)
            fig.add_trace(go.Scatter(x=grid, y=occ[k] * _gauss(grid, spec.means[k, 0], spec.stds[k, 0]),
                                     mode="lines", line=dict(color=c, dash="dash"), name=f"true {spec.states[k]}"))
            fig.add_trace(go.Scatter(x=grid, y=occ[k] * _gauss(grid, learned["means"][k, 0], learned["stds"][k, 0]),
                                     mode="lines", line=dict(color=c, width=3), name=f"learned {spec.states[k]}"))
        fig.update_layout(xaxis=dict(title=dict(text="x")), yaxis=dict(title=dict(text="density")),
                          legend=F.bottom_legend(), margin=dict(b=110))
        return fig
    fig = F._new_figure(title + ": samples, true (×) and learned (◆, 2σ) states", height=420)
    pts = data.obs.reshape(-1, 2)
    st = data.states.ravel()
    keep = np.linspace(0, len(pts) - 1, min(len(pts), 3000)).astype(int)
    theta = np.linspace(0, 2 * np.pi, 60)
    for k in range(K):
        c = F.state_colour(k)
        sel = keep[st[keep] == k]
        fig.add_trace(go.Scattergl(x=pts[sel, 0], y=pts[sel, 1], mode="markers", name=spec.states[k],
                                   marker=dict(color=c, size=4, opacity=0.35)))
        fig.add_trace(go.Scatter(x=[spec.means[k, 0]], y=[spec.means[k, 1]], mode="markers", showlegend=False,
                                 marker=dict(symbol="x", size=14, color=c, line=dict(width=2)),
                                 name=f"true {spec.states[k]}"))
        mu, sd = learned["means"][k], learned["stds"][k]
        fig.add_trace(go.Scatter(x=mu[0] + 2 * sd[0] * np.cos(theta), y=mu[1] + 2 * sd[1] * np.sin(theta),
                                 mode="lines", line=dict(color=c, width=2), showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=[mu[0]], y=[mu[1]], mode="markers", showlegend=False, name=f"learned {spec.states[k]}",
                                 marker=dict(symbol="diamond", size=12, color=c, line=dict(color="#111", width=1))))
    fig.update_layout(xaxis=dict(title=dict(text="x[0]")), yaxis=dict(title=dict(text="x[1]"), scaleanchor="x"),
                      legend=F.bottom_legend(), margin=dict(b=100))
    return fig


def recovery_figure(rows: list) -> go.Figure:
    """Every parameter: true (x) against learned (y); on the diagonal = recovered."""
    fig = F._new_figure("Parameter recovery (on the diagonal = recovered)", height=380)
    groups = list(dict.fromkeys(g for g, *_ in rows))
    lo = min([min(t, v) for _, _, t, v in rows] + [0.0])
    hi = max([max(t, v) for _, _, t, v in rows] + [1.0])
    pad = 0.05 * (hi - lo)
    fig.add_trace(go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines",
                             line=dict(color="#9ca3af", dash="dot"), name="learned = true", hoverinfo="skip"))
    for i, g in enumerate(groups):
        sel = [r for r in rows if r[0] == g]
        fig.add_trace(go.Scatter(x=[r[2] for r in sel], y=[r[3] for r in sel], mode="markers", name=g,
                                 text=[r[1] for r in sel], marker=dict(size=9, color=F.STATE_COLOURS[i]),
                                 hovertemplate="%{text}<br>true %{x:.3f}<br>learned %{y:.3f}<extra></extra>"))
    fig.update_layout(xaxis=dict(title=dict(text="true")), yaxis=dict(title=dict(text="learned")),
                      legend=F.bottom_legend(), margin=dict(b=110))
    return fig


def em_figure(fit: L.Fit, iteration: int) -> go.Figure:
    h = np.asarray(fit.history) / fit.frames
    title = "EM: log-likelihood per frame" + (" — converged" if fit.converged else " — NOT converged")
    fig = F._new_figure(title, height=280)
    it = np.arange(1, h.size + 1)
    fig.add_trace(go.Scatter(x=it, y=h, mode="lines+markers", name="log L / frame", line=dict(color="#636efa")))
    i = int(min(max(iteration, 1), h.size))
    fig.add_trace(go.Scatter(x=[i], y=[h[i - 1]], mode="markers", name="shown", marker=dict(size=14, color="#FB0D0D",
                                                                                           symbol="circle-open",
                                                                                           line=dict(width=3))))
    fig.update_layout(xaxis=dict(title=dict(text="EM iteration"), dtick=max(1, h.size // 10)),
                      yaxis=dict(title=dict(text="log L / frame")), showlegend=False)
    if not fit.converged:
        fig.update_layout(title=dict(font=dict(color="#FB0D0D")))
    return fig


# --------------------------------------------------------------------------- handlers


def load_preset(name: str):
    length = PRESET_LENGTH.get(name, 200)
    return json.dumps(L.preset(name), indent=1), length


def do_sample(spec_text: str, num_sequences: int, length: int, seed: int):
    try:
        spec = L.parse_spec(spec_text)
        data = L.sample(spec, int(num_sequences), int(length), int(seed or 0))
    except Exception as exc:  # noqa: BLE001
        raise _err(exc) from None
    occ = np.bincount(data.states.ravel(), minlength=spec.num_states)
    note = (f"Drew {data.states.shape[0]} × {data.states.shape[1]} frames; time in each state: "
            + ", ".join(f"{spec.states[k]} {occ[k]}" for k in range(spec.num_states)) + ".")
    return {"spec": spec, "data": data}, sample_figure(spec, data), note


def do_fit(store: dict | None, max_iter: int, seed: int):
    if not store or "data" not in store:
        raise gr.Error("sample first: press Sample", title="Input problem")
    spec, data = store["spec"], store["data"]
    try:
        fit = L.fit(spec, data, max_iter=int(max_iter), seed=int(seed or 0))
        plain = L.fit(spec, data, max_iter=int(max_iter), seed=int(seed or 0), kind="gaussian") \
            if spec.kind == "semi-markov" else None
    except Exception as exc:  # noqa: BLE001
        raise _err(exc) from None
    store = dict(store, fit=fit, plain=plain)
    rows = L.recovery_rows(spec, fit.params)
    n = len(fit.history)
    table = [[g, name, round(t, 4), round(v, 4), round(abs(v - t), 4)] for g, name, t, v in rows]
    match = ", ".join(f"learned s{fit.permutation[k]} → {spec.states[k]}" for k in range(spec.num_states))
    means_err = [abs(v - t) for g, _, t, v in rows if g in ("mean", "emission")]
    note = (f"EM ran {n} iterations ({'converged' if fit.converged else 'NOT converged: raise the limit'}). "
            f"States matched by Hungarian assignment: {match}. Largest emission error: {max(means_err):.3f}. "
            "Fitted states come out in any order; matching puts them in the true order before comparing. "
            "Draw more sequences and the errors shrink (roughly as 1/√frames).")
    try:
        import torch

        x = torch.as_tensor(data.obs)
        true_ll = float(L.true_model(spec).score(x.long() if spec.kind == "categorical" else x).detach().sum())
        note += (f" Log-likelihood per frame: learned {fit.history[-1] / fit.frames:.4f}, "
                 f"true model {true_ll / fit.frames:.4f}.")
        if spec.kind == "categorical":
            note += (" With few symbols a categorical HMM's likelihood has long flat ridges: EM may settle on "
                     "other numbers that explain the data as well as the truth does.")
    except Exception:  # noqa: BLE001 - an extra for the note only
        pass
    if plain is not None:
        note += (" The plain HMM fitted alongside can only say 'stay with probability a' — a geometric duration "
                 "law, highest at 1 frame — while the sampled durations peak far from 1: that is why "
                 "semi-Markov models exist.")
    return (store, recovery_figure(rows), table, note, gr.update(maximum=n, value=n),
            data_figure(spec, data, fit.at(n), n, plain), em_figure(fit, n))


def show_iteration(store: dict | None, iteration: int):
    if not store or "fit" not in store:
        return gr.update(), gr.update()
    fit = store["fit"]
    i = int(iteration)
    return data_figure(store["spec"], store["data"], fit.at(i), i, store.get("plain")), em_figure(fit, i)


def do_trellis(store: dict | None, which: str, frames: int, step: int):
    if not store or "data" not in store:
        raise gr.Error("sample first: press Sample", title="Input problem")
    spec, data = store["spec"], store["data"]
    T = int(min(max(2, frames), 30, data.states.shape[1]))
    x = data.obs[0, :T]
    try:
        if which == "learned model":
            if "fit" not in store:
                raise gr.Error("fit first: press Fit", title="Input problem")
            kind = "gaussian" if spec.kind == "semi-markov" else spec.kind
            src = store["plain"] if spec.kind == "semi-markov" else store["fit"]
            model = L._fit_model(spec, kind)
            p = src.params
            model.startprob, model.transmat = p["startprob"], p["transmat"]
            if kind == "categorical":
                model.emissionprob = p["emissionprob"]
            else:
                model.means, model.covars = p["means"], p["stds"] ** 2
        else:
            if spec.kind == "semi-markov":
                raise gr.Error("the trellis shows HMM recursions; a semi-Markov model's trellis runs over segments. "
                               "Pick 'learned model' (the plain HMM fitted alongside)", title="Input problem")
            model = L.true_model(spec)
        tr = L.trellis(*L.model_log_probs(model, x))
    except gr.Error:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _err(exc) from None
    s = int(min(max(step, 1), T)) - 1
    truth = " ".join(spec.states[k] for k in data.states[0, :T])
    return (trellis_figure(tr, s, spec.states, title=f"Trellis ({which})"), column_table(tr, s, spec.states)
            + f"\n\nTrue states of these frames: {truth}", gr.update(maximum=T, value=s + 1))


def build_lab_tab() -> None:
    gr.Markdown("A hidden Markov model you define, sampled, fitted and taken apart. Pick a preset or edit the "
                "model (JSON), **Sample** sequences from it, **Fit** a model to the samples with EM, compare "
                "learned and true parameters (states matched), step through EM, and walk the trellis.")
    store = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            preset = gr.Dropdown(list(L.PRESETS), value=DEFAULT_PRESET, label="Preset", elem_id="lab-preset",
                                 info="Weather: symbols from hidden weather. Word model: a left-to-right chain. "
                                      "Switch: two overlapping states. Durations: why semi-Markov models exist.")
            spec = gr.Code(json.dumps(L.preset(DEFAULT_PRESET), indent=1), language="json", label="Model (JSON)",
                           elem_id="lab-spec", lines=14)
            gr.Markdown(f"`kind`: gaussian (1-D/2-D), categorical or semi-markov; up to {L.MAX_STATES} states; "
                        "rows of `startprob`, `transmat`, `emissionprob` sum to 1.", elem_classes="hmm-note")
            num_seq = gr.Slider(1, 200, value=20, step=1, label="Sequences",
                                info="How many independent sequences to draw")
            length = gr.Slider(2, 1000, value=200, step=1, label="Frames per sequence",
                               info=f"At most {L.MAX_FRAMES} frames in all")
            seed = gr.Number(0, precision=0, label="Seed", info="Same seed, same samples and fit")
            sample_btn = gr.Button("Sample", variant="primary", elem_id="lab-sample")
            max_iter = gr.Slider(1, L.MAX_ITER, value=50, step=1, label="EM iterations (max)",
                                 info="EM stops earlier when the gain per frame falls below 1e-4")
            fit_btn = gr.Button("Fit", variant="primary", elem_id="lab-fit")
        with gr.Column(scale=3):
            sample_note = gr.Markdown()
            sample_plot = gr.Plot(label="Samples", elem_id="plot-lab-sample")
            fit_note = gr.Markdown(elem_id="lab-fit-note")
            with gr.Row():
                recovery = gr.Plot(label="Parameter recovery", elem_id="plot-lab-recovery")
                em_plot = gr.Plot(label="EM", elem_id="plot-lab-em")
            iteration = gr.Slider(1, 2, value=1, step=1, label="EM iteration shown",
                                  info="Move to watch the parameters after each iteration", elem_id="lab-iteration")
            data_plot = gr.Plot(label="Learned vs true", elem_id="plot-lab-data")
            table = gr.Dataframe(headers=["group", "parameter", "true", "learned", "|error|"], interactive=False,
                                 label="Learned vs true parameters (states matched)", elem_id="lab-table")
            with gr.Accordion("Trellis: forward variables and Viterbi backpointers, step by step", open=True):
                with gr.Row():
                    which = gr.Radio(["true model", "learned model"], value="true model", label="Model",
                                     info="The recursions under the model you defined, or the one EM learned")
                    frames = gr.Slider(2, 30, value=10, step=1, label="Frames", info="First frames of sequence 1")
                    step = gr.Slider(1, 30, value=1, step=1, label="Step", info="Columns computed so far",
                                     elem_id="lab-step")
                trellis_btn = gr.Button("Show trellis", elem_id="lab-trellis")
                trellis_plot = gr.Plot(label="Trellis", elem_id="plot-lab-trellis")
                trellis_text = gr.Markdown()
    preset.input(load_preset, preset, [spec, length], api_visibility="private")
    sample_btn.click(do_sample, [spec, num_seq, length, seed], [store, sample_plot, sample_note],
                     api_name="lab_sample")
    fit_btn.click(do_fit, [store, max_iter, seed], [store, recovery, table, fit_note, iteration, data_plot, em_plot],
                  api_name="lab_fit", concurrency_id="compute")
    iteration.input(show_iteration, [store, iteration], [data_plot, em_plot], api_visibility="private")
    trellis_args = ([store, which, frames, step], [trellis_plot, trellis_text, step])
    trellis_btn.click(do_trellis, *trellis_args, api_visibility="private")
    step.input(do_trellis, *trellis_args, api_visibility="private")
