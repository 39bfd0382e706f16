"""Every component id, one class per page, so callbacks and layouts cannot drift apart."""

from __future__ import annotations


class Shell:
    FEED_BADGE = "shell-feed-badge"
    STATUS_INTERVAL = "shell-status-interval"
    #: Any page writes a partial alert rule here (dict in the JSON rule format of
    #: ``POST /api/alerts``) to open the shell's alert modal pre-filled.
    ALERT_PREFILL = "shell-alert-prefill"


class Markets:
    TICK_INTERVAL = "markets-tick-interval"
    FEED_CARD = "markets-feed-card"
    FEED_DETAIL = "markets-feed-detail"
    TIMEFRAME = "markets-timeframe"
    MIN_TRADES = "markets-min-trades"
    MIN_VOLUME = "markets-min-volume"
    #: spread filter (#17): hide symbols whose quoted spread is wider (bps); in the URL
    MAX_SPREAD = "markets-max-spread"
    URL_SINK = "markets-url-sink"  # dcc.Store: the query string last written (url_query)
    HEATMAP = "markets-heatmap"
    HEATMAP_NOTE = "markets-heatmap-note"
    #: Browser-side memory of the feed detail card drawn.
    STATE = "markets-state"
    #: the board grid (#19): one row per instrument, row id = run name
    GRID = "markets-grid"
    BOARD = "markets-board"  # dcc.Store: the server's last refresh message
    CLIENT = "markets-client"  # dcc.Store: version + visible sparklines the tab holds
    QUICK_FILTER = "markets-quick-filter"
    QUICK_SINK = "markets-quick-sink"  # dcc.Store: the quick filter text applied
    PREFILTER = "markets-prefilter"  # dcc.Store: the pre-filters' thresholds
    PREFILTER_SINK = "markets-prefilter-sink"
    GRID_NOTE = "markets-grid-note"
    OPEN_PAIR = "markets-open-pair"
    PAIR_NOTE = "markets-pair-note"
    HEAT_SET = "markets-heat-set"
    HEAT_INTERVAL = "markets-heat-interval"
    #: Browser-side memory of the heatmap drawn (its set, timeframe, last bar).
    HEAT_STATE = "markets-heat-state"

    @staticmethod
    def feed(name: str) -> dict:
        """One badge of the feed strip."""
        return {"type": "markets-feed", "index": name}


class Pair:
    """The pair page. Every widget of a pair panel is a pattern id ``{type, index}``
    (``index`` = panel number) so several pairs run side by side with MATCH callbacks."""

    TICK_INTERVAL = "pair-tick-interval"
    URL = "pair-url"  # dcc.Store: the query string last written to the address bar
    TABS = "pair-tabs"
    ADD = "pair-add"
    NOTE = "pair-note"
    # kinds of the per-panel pattern ids (use Pair.pid(kind, index))
    A, B, TF, WINDOW, REG, PRICES, PRICE_MODE, K = (
        "pair-a", "pair-b", "pair-tf", "pair-window", "pair-reg", "pair-prices",
        "pair-price-mode", "pair-k",
    )
    ENTRY = "pair-entry"
    PRICE_SOURCE = "pair-price-source"  # source=trade|mid: the price the pair is on (#17)
    SELECTION = "pair-selection"  # dcc.Store: validated selection, written after build
    DRAWN = "pair-drawn"  # dcc.Store: bar_seq drawn, full-redraw bookkeeping
    VIEW = "pair-view"  # dcc.Store: shared visible x range of the panel's charts
    ERROR = "pair-error"
    PRICE_GRAPH, SPREAD_GRAPH, Z_GRAPH, CORR_GRAPH, BETA_GRAPH = (
        "pair-price-graph", "pair-spread-graph", "pair-z-graph", "pair-corr-graph",
        "pair-beta-graph",
    )
    COLLECTING = "pair-collecting"  # {type, index: panel, chart}: "collecting: N of M bars"
    KPI = "pair-kpi"  # bar-close KPI cards
    LIVE_Z = "pair-live-z"
    ADF_BUTTON = "pair-adf-button"
    ADF_RESULT = "pair-adf-result"
    ADF_STORE = "pair-adf-store"
    SIGNAL = "pair-signal"
    ALERT_BUTTON = "pair-alert-button"
    TAB = "pair-tab"
    SOURCE = "pair-source"  # "" (live feed) or a dataset name: components.dataset_select
    STATUS = "pair-status"  # what the panel is doing: "building Huber fit ..."
    #: KPIs, signal and charts; class "stale" while they show another choice than the
    #: controls (set in the browser on every control change, see pages/pair.py)
    BODY = "pair-body"
    #: dcc.Store: the extendData of the last refresh, applied in the browser only to
    #: points after each trace's last x (idempotent whatever order responses land in)
    EXTEND = "pair-extend"
    #: dcc.Store the browser bumps when a chart misses bars (a payload was overtaken):
    #: the next refresh redraws the panel whole
    RESYNC = "pair-resync"

    @staticmethod
    def pid(kind: str, index: int | str) -> dict:
        return {"type": kind, "index": index}


class Data:
    """The data page (`/data`): features table, downloads, OHLC upload."""

    SOURCE = "data-source"  # "(live)" or a dataset name: components.dataset_select
    URL_SINK = "data-url-sink"  # dcc.Store: the query string last written (url_query)
    A = "data-a"
    B = "data-b"
    TF = "data-tf"
    WINDOW = "data-window"
    REG = "data-reg"
    PRICES = "data-prices"
    ENTRY = "data-entry"
    ADF_EVERY = "data-adf-every"
    LOAD = "data-load"
    SELECTION = "data-selection"  # dcc.Store: the validated selection the grid pages
    STATUS = "data-status"
    GRID = "data-grid"
    PURGE_SINK = "data-purge-sink"
    FORMAT = "data-format"
    DOWNLOAD_TABLE = "data-download-table"
    DOWNLOAD_BARS = "data-download-bars"
    DOWNLOAD_PAIR = "data-download-pair"
    DOWNLOAD_TICKS = "data-download-ticks"
    TICKS_SYMBOL = "data-ticks-symbol"
    TICKS_START = "data-ticks-start"
    TICKS_END = "data-ticks-end"
    DOWNLOAD = "data-download"  # the dcc.Download
    DOWNLOAD_NOTE = "data-download-note"
    UPLOAD = "data-upload"
    UPLOAD_SYMBOL = "data-upload-symbol"
    UPLOAD_DATASET = "data-upload-dataset"
    UPLOAD_RESULT = "data-upload-result"
    UPLOAD_TOO_BIG = "data-upload-too-big"
    DATASETS = "data-datasets"  # the dataset list (children)
    DELETE = "data-delete"
    DATASETS_VERSION = "data-datasets-version"  # dcc.Store bumped on upload/delete


class Backtest:
    A, B, TF, WINDOW, REG, PRICES = (
        "backtest-a", "backtest-b", "backtest-tf", "backtest-window", "backtest-reg",
        "backtest-prices",
    )
    ENTRY, EXIT, STOP, MAX_HOLD, FEE, SLIPPAGE = (
        "backtest-entry", "backtest-exit", "backtest-stop", "backtest-max-hold",
        "backtest-fee", "backtest-slippage",
    )
    RUN = "backtest-run"
    SPINNER = "backtest-spinner"
    MESSAGE = "backtest-message"
    KPIS = "backtest-kpis"
    EQUITY_GRAPH = "backtest-equity-graph"
    DRAWDOWN_GRAPH = "backtest-drawdown-graph"
    TRADES = "backtest-trades"
    #: dcc.Store: the exact run shown (args + first/last bar) so downloads re-run it
    RUN_SPEC = "backtest-run-spec"
    DL_TRADES = "backtest-dl-trades"
    DL_EQUITY = "backtest-dl-equity"
    DOWNLOAD = "backtest-download"
    SOURCE = "backtest-source"  # "(live)" or a dataset name: components.dataset_select
    URL_SINK = "backtest-url-sink"  # dcc.Store: the query string last written (url_query)
    #: ``source=trade|mid`` and ``fills=last|quote`` (#17)
    PRICE_SOURCE, FILLS = "backtest-price-source", "backtest-fills"


class Screener:
    TF, WINDOW, REG, PRICES, LOOKBACK = (
        "screener-tf", "screener-window", "screener-reg", "screener-prices",
        "screener-lookback",
    )
    RUN = "screener-run"
    SPINNER = "screener-spinner"
    INTERVAL = "screener-interval"
    #: dcc.Store written by the cheap interval check when a bar closed: starts a screen
    TRIGGER = "screener-trigger"
    #: dcc.Store: bar count and time of the last screen
    LAST = "screener-last"
    STATUS = "screener-status"
    MESSAGE = "screener-message"
    GRID = "screener-grid"
    URL = "screener-url"
    HEATMAP = "screener-heatmap"
    LL_A, LL_B, LL_K = "screener-ll-a", "screener-ll-b", "screener-ll-k"
    LL_GRAPH = "screener-ll-graph"
    LL_NOTE = "screener-ll-note"
    SOURCE = "screener-source"  # "(live)" or a dataset name: components.dataset_select
    URL_SINK = "screener-url-sink"  # dcc.Store: the query string last written (url_query)
    PRICE_SOURCE = "screener-price-source"  # source=trade|mid (#17)


class MarketScreen:
    """The market-wide screen `/market-screen` (#19): top N, prefilter, Engle-Granger."""

    N, TF, LOOKBACK = "mscreen-n", "mscreen-tf", "mscreen-lookback"
    MIN_CORR, MAX_PAIRS = "mscreen-min-corr", "mscreen-max-pairs"
    PRICES, Z_WINDOW, BOTH = "mscreen-prices", "mscreen-z-window", "mscreen-both"
    RUN = "mscreen-run"
    PROGRESS = "mscreen-progress"
    PROGRESS_WRAP = "mscreen-progress-wrap"
    STATUS = "mscreen-status"
    MESSAGE = "mscreen-message"
    PERMALINK = "mscreen-permalink"
    GRID = "mscreen-grid"
    URL = "mscreen-url"
    URL_SINK = "mscreen-url-sink"  # dcc.Store: the query string last written (url_query)
    END = "mscreen-end"  # dcc.Store: the URL's end= (pins the window), None when absent


class Alerts:
    """The alerts page (`/alerts`) and the alert widgets of the shell (rule modal,
    toasts, browser notifications), which every page carries."""

    # page
    NEW = "alerts-new"
    RULES = "alerts-rules"
    EVENTS = "alerts-events"
    REFRESH = "alerts-refresh"  # dcc.Interval of the page tables
    DOWNLOAD_BUTTON = "alerts-download-button"
    DOWNLOAD = "alerts-download"
    NOTIFY_SWITCH = "alerts-notify-switch"
    PAGE_NOTE = "alerts-page-note"
    DELETE_MODAL = "alerts-delete-modal"  # "Delete rule #N?" confirmation
    DELETE_TEXT = "alerts-delete-text"
    DELETE_CONFIRM = "alerts-delete-confirm"
    DELETE_CANCEL = "alerts-delete-cancel"
    DELETE_PENDING = "alerts-delete-pending"  # dcc.Store: id asked about
    UNDO = "alerts-undo"  # dcc.Store: the last deleted rule (AlertService.delete)
    UNDO_BAR = "alerts-undo-bar"
    UNDO_TEXT = "alerts-undo-text"
    UNDO_BUTTON = "alerts-undo-button"
    NOTIFY_STATE = "alerts-notify-state"  # text: the browser's notification permission
    # page: delivery channels (dashapp/components/channel_modal.py)
    CHANNELS = "alerts-channels"  # the channel list
    CHANNEL_NEW = "alerts-channel-new"
    CHANNELS_CHANGED = "alerts-channels-changed"  # dcc.Store: bumped on add/edit/delete
    CHANNEL_MODAL = "alerts-channel-modal"
    CHANNEL_MODAL_TITLE = "alerts-channel-modal-title"
    CHANNEL_EDIT_ID = "alerts-channel-edit-id"  # dcc.Store: id edited, or None
    CHANNEL_URL_SHOWN = "alerts-channel-url-shown"  # dcc.Store: masked URL the edit opened with
    CHANNEL_SAVE = "alerts-channel-save"
    CHANNEL_CANCEL = "alerts-channel-cancel"
    CHANNEL_ERROR = "alerts-channel-error"
    CHANNEL_SECRET_NOTE = "alerts-channel-secret-note"
    CHANNEL_TOAST = "alerts-channel-toast"  # outcome of a Test or a delete
    CHANNEL_DELETE_MODAL = "alerts-channel-delete-modal"  # "Delete channel …?"
    CHANNEL_DELETE_TEXT = "alerts-channel-delete-text"
    CHANNEL_DELETE_CONFIRM = "alerts-channel-delete-confirm"
    CHANNEL_DELETE_CANCEL = "alerts-channel-delete-cancel"
    CHANNEL_DELETE_PENDING = "alerts-channel-delete-pending"  # dcc.Store: id asked about
    # page: delivery log (dashapp/components/delivery_log.py)
    DELIVERIES = "alerts-deliveries"
    DELIVERY_STATUS = "alerts-delivery-status"  # status filter
    DELIVERY_REFRESH = "alerts-delivery-refresh"  # dcc.Interval (5 s)
    DELIVERY_SIG = "alerts-delivery-sig"  # dcc.Store: digest of the rows shown
    # shell: modal
    MODAL = "alerts-modal"
    MODAL_TITLE = "alerts-modal-title"
    EDIT_ID = "alerts-modal-edit-id"  # dcc.Store: id of the rule being edited, or None
    SAVE = "alerts-modal-save"
    CANCEL = "alerts-modal-cancel"
    FORM_ERROR = "alerts-modal-form-error"
    PAIR_GROUP = "alerts-modal-pair-group"
    SYMBOL_GROUP = "alerts-modal-symbol-group"
    CHANGED = "alerts-changed"  # dcc.Store: bumped when a rule is saved (tables refresh)
    # shell: toasts and notifications
    TOAST_INTERVAL = "alerts-toast-interval"
    TOASTS = "alerts-toasts"
    CURSOR = "alerts-cursor"  # dcc.Store: last event id this tab has shown
    NOTIFY = "alerts-notify"  # dcc.Store: the newest events, for the Notification API
    NOTIFY_ENABLED = "alerts-notify-enabled"  # dcc.Store (localStorage): opt-in
    NOTIFY_SINK = "alerts-notify-sink"

    @staticmethod
    def field(name: str) -> str:
        """Input of the rule form for rule field ``name`` (``threshold``, ``a``...)."""
        return f"alerts-modal-{name}"

    @staticmethod
    def feedback(name: str) -> str:
        return f"alerts-modal-{name}-feedback"

    @staticmethod
    def enable(rule_id: int) -> dict:
        return {"type": "alerts-enable", "index": rule_id}

    @staticmethod
    def edit(rule_id: int) -> dict:
        return {"type": "alerts-edit", "index": rule_id}

    @staticmethod
    def delete(rule_id: int) -> dict:
        return {"type": "alerts-delete", "index": rule_id}

    @staticmethod
    def channel_field(name: str) -> str:
        """Input of the channel form (``kind``, ``name``, ``url``, ``secret``)."""
        return f"alerts-channel-{name}"

    @staticmethod
    def channel_feedback(name: str) -> str:
        return f"alerts-channel-{name}-feedback"

    @staticmethod
    def channel_test(channel_id: int) -> dict:
        return {"type": "alerts-channel-test", "index": channel_id}

    @staticmethod
    def channel_edit(channel_id: int) -> dict:
        return {"type": "alerts-channel-edit", "index": channel_id}

    @staticmethod
    def channel_delete(channel_id: int) -> dict:
        return {"type": "alerts-channel-delete", "index": channel_id}


class Basis:
    """The basis page (`/basis`): a perp against its spot (analytics/basis.py)."""

    PERP, SPOT, TF, WINDOW, MAX_LAG = (
        "basis-perp", "basis-spot", "basis-tf", "basis-window", "basis-max-lag",
    )
    SOURCE = "basis-source"  # price source: trade closes or mids (top of book)
    INTERVAL = "basis-interval"  # cheap check for a newly closed point (2 s)
    TRIGGER = "basis-trigger"  # dcc.Store: the pair's point count last drawn
    MESSAGE = "basis-message"
    STATUS = "basis-status"
    KPIS = "basis-kpis"
    BPS_GRAPH = "basis-bps-graph"
    Z_GRAPH = "basis-z-graph"
    LL_GRAPH = "basis-ll-graph"
    LL_NOTE = "basis-ll-note"
    PAIR_LINK = "basis-pair-link"
    ALERT_BUTTON = "basis-alert-button"  # opens the shell's alert modal on basis_bps
    URL_SINK = "basis-url-sink"  # dcc.Store: the query string last written (url_query)
