// Markdown for assistant replies: marked renders, DOMPurify (a private instance, so its hooks
// touch nothing else) keeps a short list of tags. Raw HTML in a reply is shown as text, never
// parsed; images become links, so a reply cannot make the browser fetch anything by itself;
// only http(s), mailto and #fragment links survive, and they open in a new tab without an opener.

import { Marked } from './vendor/marked.esm.js';
import createDOMPurify from './vendor/purify.es.js';

const ALLOWED_TAGS = [
  'a', 'blockquote', 'br', 'code', 'del', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'li',
  'ol', 'p', 'pre', 'strong', 'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul',
];
const PURIFY_CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR: ['href', 'title', 'class', 'start', 'align'],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  RETURN_DOM_FRAGMENT: true,
};
const CODE_LANGUAGE = /^language-[\w+#.-]{1,40}$/;

const escapeHtml = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    html({ text, block }) {
      return block ? `<p>${escapeHtml(text.trim())}</p>\n` : escapeHtml(text);
    },
    image({ href, text }) {
      return `<a href="${escapeHtml(href || '')}">${escapeHtml(text || href || 'image')}</a>`;
    },
  },
});

const purify = createDOMPurify(window);
purify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
  // Classes come from code fences only (language-x): never let a reply pick the page's own.
  if (node.hasAttribute('class') && !(node.tagName === 'CODE' && CODE_LANGUAGE.test(node.getAttribute('class')))) {
    node.removeAttribute('class');
  }
});

/** A sanitized fragment of the Markdown `text`, each code block with a copy button. */
export function renderMarkdown(text) {
  const fragment = purify.sanitize(marked.parse(text || '').trim(), PURIFY_CONFIG);
  for (const pre of fragment.querySelectorAll('pre')) {
    const block = document.createElement('div');
    block.className = 'code-block';
    pre.replaceWith(block);
    block.append(pre, copyButton());
  }
  return fragment;
}

function copyButton() {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'copy-code';
  button.dataset.testid = 'copy-code';
  button.setAttribute('aria-label', 'Copy code');
  button.title = 'Copy code';
  return button; // its label is CSS content, so a reply's text stays the text it shows
}

/** Copies the code block of a clicked copy button (one listener for the whole conversation). */
export async function copyCode(button) {
  const code = button.parentElement && button.parentElement.querySelector('pre');
  if (!code) return;
  const ok = await writeClipboard(code.textContent);
  button.dataset.state = ok ? 'copied' : 'failed';
  clearTimeout(button.copyTimer);
  button.copyTimer = setTimeout(() => delete button.dataset.state, 1500);
}

async function writeClipboard(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return legacyCopy(text); // no clipboard API here (an insecure origin) or it was refused
  }
}

function legacyCopy(text) {
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.append(area);
  area.select();
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  } finally {
    area.remove();
  }
}
