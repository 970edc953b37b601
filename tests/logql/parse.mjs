// Reads a JSON list of LogQL queries on stdin and prints, for each, what Grafana's LogQL
// grammar (@grafana/lezer-logql, the parser of Grafana's query editor) makes of it:
//   {"query", "errors": [text at each error node], "kind": "LogExpr" | "MetricExpr" | null,
//    "selectors": [[[label, op, value], ...] per stream selector]}
// Label filters after a pipe (| status=~"5..") are not part of a stream selector.
import { readFileSync } from 'node:fs';
import { parser } from '@grafana/lezer-logql';

const queries = JSON.parse(readFileSync(0, 'utf8'));
// LogQL strings: "..." with Go escapes (JSON's, for what dashboards use) or `raw`.
const unquote = (s) => (s.startsWith('`') ? s.slice(1, -1) : JSON.parse(s));
const results = queries.map((query) => {
  const tree = parser.parse(query);
  const errors = [];
  const selectors = [];
  let kind = null;
  const text = (node) => query.slice(node.from, node.to);
  tree.iterate({
    enter(node) {
      if (node.type.isError) {
        errors.push(`at ${node.from}: ${JSON.stringify(query.slice(Math.max(0, node.from - 10), node.to + 10))}`);
      }
    },
  });
  tree.iterate({
    enter(node) {
      if (kind === null && (node.name === 'LogExpr' || node.name === 'MetricExpr')) {
        kind = node.name;
      }
      if (node.name === 'Selector') {
        const matchers = [];
        const cursor = node.node.cursor();
        cursor.iterate((inner) => {
          if (inner.name === 'Matcher') {
            const m = inner.node;
            const label = m.getChild('Identifier');
            const value = m.getChild('String');
            const op = ['Eq', 'Neq', 'Re', 'Nre'].map((o) => m.getChild(o)).find(Boolean);
            matchers.push([label && text(label), op && text(op), value && unquote(text(value))]);
            return false;
          }
          return undefined;
        });
        selectors.push(matchers);
        return false;
      }
      return undefined;
    },
  });
  return { query, errors, kind, selectors };
});
process.stdout.write(JSON.stringify(results));
