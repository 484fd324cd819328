"use strict";(self.rspackChunkwan_nb=self.rspackChunkwan_nb||[]).push([[232],{663(n,a,r){var o=r(437),e=r.n(o),t=r(374),i=(r.n(t))()(e());i.push([n.id,`/* Theme variables only, so the light and dark themes both apply. */
.wan-nb-Sidebar {
  display: flex;
  flex-direction: column;
  overflow-y: auto;
  min-width: 240px;
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size1);
}

.wan-nb-Sidebar-header {
  display: flex;
  align-items: baseline;
  justify-content: space-between;
  gap: 8px;
  padding: 8px 12px 4px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.wan-nb-Sidebar-header h2 {
  margin: 0;
  font-size: var(--jp-ui-font-size1);
  font-weight: 600;
  text-transform: uppercase;
  letter-spacing: 0.04em;
}

.wan-nb-Sidebar-state {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.wan-nb-Sidebar-state[data-stream='reconnecting'] {
  color: var(--jp-warn-color1);
}

.wan-nb-Sidebar-notice {
  margin: 12px;
  color: var(--jp-ui-font-color2);
  line-height: 1.4;
}

.wan-nb-Sidebar[data-availability='missing'] .wan-nb-Sidebar-notice,
.wan-nb-Sidebar[data-availability='error'] .wan-nb-Sidebar-notice {
  color: var(--jp-ui-font-color1);
  border-left: 3px solid var(--jp-warn-color1);
  padding-left: 8px;
}

.wan-nb-Sidebar-list {
  list-style: none;
  margin: 0;
  padding: 0;
}

.wan-nb-Row {
  padding: 8px 12px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
  contain: content;
}

.wan-nb-Row-head {
  display: flex;
  gap: 8px;
  align-items: flex-start;
}

.wan-nb-Row-thumb {
  width: 64px;
  height: 48px;
  object-fit: cover;
  border-radius: 2px;
  background: var(--jp-layout-color3);
  flex: none;
}

.wan-nb-Row-text {
  min-width: 0;
  flex: 1;
}

.wan-nb-Row-prompt {
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
  font-weight: 500;
}

.wan-nb-Row-meta,
.wan-nb-Row-stats {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.wan-nb-Row-stats {
  display: flex;
  flex-wrap: wrap;
  gap: 0 8px;
  margin-top: 2px;
  font-variant-numeric: tabular-nums;
}

.wan-nb-Row-stats span:empty {
  display: none;
}

.wan-nb-Row-vram[data-level='warning'] {
  color: var(--jp-warn-color1);
}

.wan-nb-Row-vram[data-level='critical'] {
  color: var(--jp-error-color1);
}

.wan-nb-Row-bar {
  height: 4px;
  margin-top: 6px;
  background: var(--jp-layout-color3);
  border-radius: 2px;
  overflow: hidden;
}

.wan-nb-Row-fill {
  height: 100%;
  width: 0;
  background: var(--jp-brand-color1);
  transition: width 0.1s linear;
}

.wan-nb-Row[data-status='completed'] .wan-nb-Row-fill {
  background: var(--jp-success-color1);
}

.wan-nb-Row[data-status='failed'] .wan-nb-Row-fill,
.wan-nb-Row[data-status='lost'] .wan-nb-Row-fill {
  background: var(--jp-error-color1);
}

.wan-nb-Row[data-status='cancelled'] .wan-nb-Row-fill,
.wan-nb-Row[data-status='paused'] .wan-nb-Row-fill {
  background: var(--jp-warn-color1);
}

.wan-nb-Row-error {
  margin-top: 4px;
  color: var(--jp-error-color1);
  font-size: var(--jp-ui-font-size0);
  word-break: break-word;
}

.wan-nb-Row-scenes,
.wan-nb-Row-actions {
  display: flex;
  flex-wrap: wrap;
  gap: 4px;
  margin-top: 6px;
}

.wan-nb-Button {
  padding: 2px 8px;
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: var(--jp-border-radius);
  background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size0);
  cursor: pointer;
  text-decoration: none;
}

.wan-nb-Button:hover {
  background: var(--jp-layout-color3);
}

.wan-nb-Button:focus-visible,
.wan-nb-Status:focus-visible {
  outline: 2px solid var(--jp-brand-color1);
  outline-offset: 1px;
}

.wan-nb-Button:disabled {
  opacity: 0.6;
  cursor: default;
}

.wan-nb-Button[hidden],
.wan-nb-Row [hidden] {
  display: none;
}

/* "Queued (#2)": where a waiting task stands in its generator's queue. */
.wan-nb-Row-queue {
  flex: none;
  padding: 0 6px;
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: var(--jp-border-radius);
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  font-variant-numeric: tabular-nums;
  white-space: nowrap;
}

.wan-nb-up,
.wan-nb-down {
  padding: 2px 6px;
}

.wan-nb-more {
  margin: 8px 12px;
  align-self: flex-start;
}

.wan-nb-Player {
  display: flex;
  flex-direction: column;
  background: var(--jp-layout-color0);
}

.wan-nb-Player video {
  flex: 1;
  min-height: 0;
  width: 100%;
  background: black;
}

.wan-nb-Player-bar {
  display: flex;
  gap: 8px;
  align-items: center;
  padding: 6px 12px;
  color: var(--jp-ui-font-color1);
}

.wan-nb-Player-caption {
  flex: 1;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

.wan-nb-Status {
  display: flex;
  align-items: center;
  gap: 6px;
  padding: 0 6px;
  border: none;
  background: none;
  color: var(--jp-ui-font-color1);
  font: inherit;
  font-size: var(--jp-ui-font-size1);
  cursor: pointer;
}

.wan-nb-Status-spark polyline {
  fill: none;
  stroke: var(--jp-brand-color1);
  stroke-width: 1.5;
}
`,""]),r.d(a,{},{A:i})},374(n){n.exports=function(n){var a=[];return a.toString=function(){return this.map(function(a){var r="",o=void 0!==a[5];return a[4]&&(r+="@supports (".concat(a[4],") {")),a[2]&&(r+="@media ".concat(a[2]," {")),o&&(r+="@layer".concat(a[5].length>0?" ".concat(a[5]):""," {")),r+=n(a),o&&(r+="}"),a[2]&&(r+="}"),a[4]&&(r+="}"),r}).join("")},a.i=function(n,r,o,e,t){"string"==typeof n&&(n=[[null,n,void 0]]);var i={};if(o)for(var l=0;l<this.length;l++){var s=this[l][0];null!=s&&(i[s]=!0)}for(var p=0;p<n.length;p++){var c=[].concat(n[p]);o&&i[c[0]]||(void 0!==t&&(void 0===c[5]||(c[1]="@layer".concat(c[5].length>0?" ".concat(c[5]):""," {").concat(c[1],"}")),c[5]=t),r&&(c[2]&&(c[1]="@media ".concat(c[2]," {").concat(c[1],"}")),c[2]=r),e&&(c[4]?(c[1]="@supports (".concat(c[4],") {").concat(c[1],"}"),c[4]=e):c[4]="".concat(e)),a.push(c))}},a}},437(n){n.exports=function(n){return n[1]}},492(n){var a=[];function r(n){for(var r=-1,o=0;o<a.length;o++)if(a[o].identifier===n){r=o;break}return r}function o(n,o){for(var e={},t=[],i=0;i<n.length;i++){var l=n[i],s=o.base?l[0]+o.base:l[0],p=e[s]||0,c="".concat(s," ").concat(p);e[s]=p+1;var d=r(c),u={css:l[1],media:l[2],sourceMap:l[3],supports:l[4],layer:l[5]};if(-1!==d)a[d].references++,a[d].updater(u);else{var b=function(n,a){var r=a.domAPI(a);return r.update(n),function(a){a?(a.css!==n.css||a.media!==n.media||a.sourceMap!==n.sourceMap||a.supports!==n.supports||a.layer!==n.layer)&&r.update(n=a):r.remove()}}(u,o);o.byIndex=i,a.splice(i,0,{identifier:c,updater:b,references:1})}t.push(c)}return t}n.exports=function(n,e){var t=o(n=n||[],e=e||{});return function(n){n=n||[];for(var i=0;i<t.length;i++){var l=r(t[i]);a[l].references--}for(var s=o(n,e),p=0;p<t.length;p++){var c=r(t[p]);0===a[c].references&&(a[c].updater(),a.splice(c,1))}t=s}}},927(n){var a={};n.exports=function(n,r){var o=function(n){if(void 0===a[n]){var r=document.querySelector(n);if(window.HTMLIFrameElement&&r instanceof window.HTMLIFrameElement)try{r=r.contentDocument.head}catch(n){r=null}a[n]=r}return a[n]}(n);if(!o)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");o.appendChild(r)}},832(n){n.exports=function(n){var a=document.createElement("style");return n.setAttributes(a,n.attributes),n.insert(a,n.options),a}},908(n,a,r){n.exports=function(n){var a=r.nc;a&&n.setAttribute("nonce",a)}},261(n){n.exports=function(n){if("u"<typeof document)return{update:function(){},remove:function(){}};var a=n.insertStyleElement(n);return{update:function(r){var o,e,t;o="",r.supports&&(o+="@supports (".concat(r.supports,") {")),r.media&&(o+="@media ".concat(r.media," {")),(e=void 0!==r.layer)&&(o+="@layer".concat(r.layer.length>0?" ".concat(r.layer):""," {")),o+=r.css,e&&(o+="}"),r.media&&(o+="}"),r.supports&&(o+="}"),(t=r.sourceMap)&&"u">typeof btoa&&(o+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(t))))," */")),n.styleTagTransform(o,a,n.options)},remove:function(){var n;null===(n=a).parentNode||n.parentNode.removeChild(n)}}}},525(n){n.exports=function(n,a){if(a.styleSheet)a.styleSheet.cssText=n;else{for(;a.firstChild;)a.removeChild(a.firstChild);a.appendChild(document.createTextNode(n))}}},579(n,a,r){var o=r(492),e=r.n(o),t=r(261),i=r.n(t),l=r(927),s=r.n(l),p=r(908),c=r.n(p),d=r(832),u=r.n(d),b=r(525),f=r.n(b),w=r(663),v={};v.styleTagTransform=f(),v.setAttributes=c(),v.insert=s().bind(null,"head"),v.domAPI=i(),v.insertStyleElement=u(),e()(w.A,v),w.A&&w.A.locals&&w.A.locals}}]);