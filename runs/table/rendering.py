"""The table compare.py prints: aligned text, Markdown or CSV (CSV keeps each mean and std in columns of
their own, so a spreadsheet or pandas reads numbers)."""
import csv
import io
import json

from runs.table.grouping import Stat


def columns(measure_keys, setting_keys):
    return ["run", "n", "state", *measure_keys, *setting_keys]


def headers(table_rows, names):
    """Column titles: 'best' names the monitored metric when every row monitors the same one."""
    monitors = {row.get("monitor") for row in table_rows}
    best = f"best {monitors.pop()}" if len(monitors) == 1 and None not in monitors else "best"
    return [best if name == "best" else name for name in names]


def as_text(table_rows, names, markdown=False):
    cells = [headers(table_rows, names)] + [[_shown(row.get(name)) for name in names] for row in table_rows]
    if markdown:
        lines = [_markdown_line(line) for line in cells]
        return "\n".join([lines[0], _markdown_line(["---"] * len(names)), *lines[1:]])
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
                     for line in cells)


def as_csv(table_rows, names):
    titles, out = [], io.StringIO()
    for name, title in zip(names, headers(table_rows, names), strict=True):
        titles += [title, f"{title}_std"] if _is_measure(table_rows, name) else [title]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(titles)
    for row in table_rows:
        line = []
        for name in names:
            cell = row.get(name)
            if _is_measure(table_rows, name):
                line += [_number(cell.mean), _number(cell.std)] if isinstance(cell, Stat) else ["", ""]
            else:
                line.append(_plain(cell))
        writer.writerow(line)
    return out.getvalue().rstrip("\n")


def _is_measure(table_rows, name):
    return any(isinstance(row.get(name), Stat) for row in table_rows)


def _shown(cell):
    if isinstance(cell, Stat):
        if cell.mean is None:
            return ""
        return _number(cell.mean) if cell.std is None else f"{_number(cell.mean)} ± {cell.std:.2g}"
    if isinstance(cell, float):
        return _number(cell)  # a searched lr to 6 digits; --csv keeps every digit
    return _plain(cell)


def _number(value):
    return "" if value is None else f"{value:.6g}"


def _plain(cell):
    if cell is None:
        return ""
    return cell if isinstance(cell, str) else json.dumps(cell)


def _markdown_line(texts):
    return "| " + " | ".join(text.replace("|", "\\|") for text in texts) + " |"
