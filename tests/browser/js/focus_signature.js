/* The focused element, and whether it shows a focus indicator (outline or ring). */
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const cs = getComputedStyle(el);
  const visible = cs.outlineStyle === 'auto' ||
                  (cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2) ||
                  cs.boxShadow !== 'none';
  return { index: el.dataset.a11yIndex || null, tag: el.tagName.toLowerCase(), id: el.id,
           focusVisible: visible };
}
