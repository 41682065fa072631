/* Every visible, enabled control in DOM order (one stop per radio group), each
   tagged with data-a11y-index so the Tab walk can tell which ones it reached. */
() => {
  const sel = 'button, input, select, textarea, a[href], summary, [tabindex]:not([tabindex="-1"])';
  const out = [];
  document.querySelectorAll(sel).forEach((el, i) => {
    if (el.disabled) return;
    if (el.closest('dialog:not([open])')) return;
    if (el.tabIndex < 0) return;
    const r = el.getBoundingClientRect();
    const cs = getComputedStyle(el);
    if (!r.width || !r.height || cs.visibility === 'hidden' || el.closest('[hidden]')) return;
    if (el.checkVisibility && !el.checkVisibility({ visibilityProperty: true })) return;
    const shut = el.closest('details:not([open])');
    if (shut && !el.closest('summary')) return;  // inside a closed disclosure
    if (el.type === 'radio' && !el.checked && document.querySelector(
          `input[type=radio][name="${el.name}"]:checked`)) return;  // one tab stop per group
    el.dataset.a11yIndex = String(i);
    out.push({ index: String(i), tag: el.tagName.toLowerCase(), id: el.id,
               text: (el.getAttribute('aria-label') || el.textContent || el.value || '').trim().slice(0, 40) });
  });
  return out;
}
